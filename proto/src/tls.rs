//! TLS: the whole process uses rustls with the ring provider (no OpenSSL, no aws-lc C build).
//! reqwest is built without a provider of its own, so the provider must be installed before
//! the first HTTP client is built; the binary does it first thing in `main`, and tests and
//! libraries that build clients call [`install_crypto_provider`] (it is idempotent).

/// Installs ring as the process's default rustls crypto provider, once; later calls (and a
/// provider already installed by someone else) are no-ops.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // An error means a provider is already installed, which is what we want.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
