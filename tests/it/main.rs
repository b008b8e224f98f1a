//! The integration tests: one binary that runs the real `retriever` against
//! real peers on loopback (Orthanc with DICOMweb, DCMTK, pynetdicom).
//!
//! It has its own runner (see `common/harness.rs`) so that a test whose peer is missing says
//! `ignored`, with the reason; the usual `cargo test` arguments (a name filter, `--exact`,
//! `--ignored`, `--nocapture`, `--test-threads`, `--list`) work as with the built-in one.

#[macro_use]
mod common;
mod bounded_time;
mod cloud_mtls;
mod cloud_return;
mod coerce;
mod config;
mod destinations;
mod dicom_tls;
mod dimse;
mod docs;
mod durability;
mod errors;
mod fetch;
mod hostile_cloud;
mod hostile_listing;
mod hostile_pacs;
mod install;
mod logs;
mod oauth;
mod patient_data;
mod prune;
mod routing;
mod routing_prune;
mod routing_store;
mod routing_watch;
mod service;
mod smoke;
mod status;
mod store;
mod warm_association;
mod watch;

fn main() {
    let args = libtest_mimic::Arguments::from_args();
    let trials = [
        bounded_time::tests(),
        cloud_mtls::tests(),
        cloud_return::tests(),
        coerce::tests(),
        config::tests(),
        destinations::tests(),
        dicom_tls::tests(),
        dimse::tests(),
        docs::tests(),
        durability::tests(),
        errors::tests(),
        fetch::tests(),
        hostile_cloud::tests(),
        hostile_listing::tests(),
        hostile_pacs::tests(),
        install::tests(),
        logs::tests(),
        oauth::tests(),
        patient_data::tests(),
        prune::tests(),
        routing::tests(),
        routing_prune::tests(),
        routing_store::tests(),
        routing_watch::tests(),
        service::tests(),
        smoke::tests(),
        status::tests(),
        store::tests(),
        warm_association::tests(),
        watch::tests(),
    ]
    .into_iter()
    .flatten()
    .collect();
    libtest_mimic::run(&args, trials).exit()
}
