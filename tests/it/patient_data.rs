//! Secrets and patient data: cache permissions, credentials that never leave for a proxy or a log,
//! text from the network printed harmlessly, and journal records that reach the disk in time.
