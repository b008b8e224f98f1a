//! The authorities a peer's TLS certificate may chain to, the same for both
//! hops: the system's store and Mozilla's list, as reqwest's own set-up
//! trusts them.

use rustls::RootCertStore;

/// The system's store and Mozilla's list. Certificates of the system's
/// store that rustls cannot parse (ancient ones, without extensions) are
/// passed over. Reading them allocates about 2 MB for a moment and keeps
/// about 0.1 MB: read once per set of settings, not per connection.
pub fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    roots
}
