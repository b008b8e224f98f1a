//! The integration tests: one binary that runs the real `retriever` against
//! real peers on loopback (Orthanc with DICOMweb, DCMTK, pynetdicom).

#[macro_use]
mod common;
mod config;
mod dimse;
mod docs;
mod errors;
mod fetch;
mod prune;
mod smoke;
mod store;
mod watch;
