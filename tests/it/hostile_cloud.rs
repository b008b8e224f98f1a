//! A cloud that sends what it should not: instances that are not what was asked for, broken or
//! endless bodies, and data sets built to crash or exhaust a parser. Nothing of it may reach the
//! cache or the destination.
