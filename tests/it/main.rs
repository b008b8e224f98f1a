//! The integration tests: one binary that runs the real `retriever` against
//! real peers on loopback (Orthanc with DICOMweb, DCMTK, pynetdicom).

#[macro_use]
mod common;
mod bounded_time;
mod config;
mod dimse;
mod docs;
mod errors;
mod fetch;
mod hostile_cloud;
mod hostile_listing;
mod hostile_pacs;
mod patient_data;
mod prune;
mod smoke;
mod store;
mod watch;
