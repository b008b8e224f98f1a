//! retriever: pulls imaging studies and their priors from a DICOMweb cloud
//! archive into a local cache and delivers them to a DICOM destination.

pub mod backoff;
pub mod cache;
pub mod cli;
pub mod coerce;
pub mod commands;
pub mod config;
pub mod delivery;
pub mod dicomweb;
pub mod dimse;
pub mod fetch;
pub mod format;
pub mod intake;
pub mod interrupt;
pub mod priors;
pub mod prune;
pub mod report;
pub mod routing;
pub mod service;
pub mod store;
#[cfg(test)]
mod testalloc;
pub mod text;
pub mod timings;
pub mod trust;
pub mod ui;
pub mod uid;
pub mod watch;
