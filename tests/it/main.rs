//! The integration tests: one binary that runs the real `retriever` against
//! real peers on loopback (Orthanc with DICOMweb, DCMTK, pynetdicom).

#[macro_use]
mod common;
mod dimse;
mod fetch;
mod smoke;
mod store;
