//! A destination that misbehaves at the protocol level: absurd PDU sizes, command sets that never
//! end, answers that trickle. The router must abort that association and go on, never panic.
