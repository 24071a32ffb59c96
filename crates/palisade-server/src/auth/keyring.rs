//! The key ring: ES512 (P-521) signing keys, stored encrypted, loaded into memory, published as JWKS.
//!
//! Invariants:
//! - Private keys rest only as AES-256-GCM envelopes under a key derived from the master key
//!   (`palisade/signing-key/v1`), with the `kid` as associated data, so an envelope cannot be moved to
//!   another key id.
//! - Exactly one key signs (active). Rotation makes a new key active at once and keeps the previous one
//!   verifying (retiring) until every token it signed has expired; then it is retired and wiped.
//! - Rotation is a compare-and-set on the active key the store holds when the rotation starts: when two
//!   instances (or `palisade keys rotate` and a server) rotate at once, exactly one new key becomes
//!   active and the other rotation fails with [`KeyRingError::RotationRaced`], changing nothing; both
//!   rings then reload, so no instance keeps signing with a replaced key longer than necessary.
//! - An unknown `kid` triggers at most one reload per [`RELOAD_INTERVAL`] (another instance may have
//!   rotated); it never makes the server trust a key from the token itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use palisade_authz::{InternalRole, SystemScope};
use palisade_crypto::jws::{Es512SigningKey, Es512VerifyingKey};
use palisade_crypto::{DerivedKey, aead};
use palisade_store::{NewSigningKey, SigningKeyStore, StoreError};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use time::OffsetDateTime;

/// How often an unknown `kid` may trigger a reload from the store.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(5);

/// Why the key ring failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    /// The store refused.
    #[error("key store: {0}")]
    Store(#[from] StoreError),
    /// A key could not be generated, sealed or opened (wrong master key?).
    #[error("signing key material: {0}")]
    Material(String),
    /// Another rotation committed first (between reading the active key and replacing it). Nothing
    /// changed; the ring has reloaded and signs with the winner's key.
    #[error(
        "another rotation committed first; its key is active and this rotation changed nothing"
    )]
    RotationRaced,
}

#[derive(Default)]
struct Loaded {
    signer: Option<Arc<Es512SigningKey>>,
    verifiers: HashMap<String, Arc<Es512VerifyingKey>>,
    jwks: Vec<Value>,
}

/// The deployment's signing keys.
pub struct KeyRing {
    store: Arc<dyn SigningKeyStore>,
    seal_key: DerivedKey,
    loaded: RwLock<Loaded>,
    last_reload: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyRing")
    }
}

impl KeyRing {
    /// Loads the keys, generating the first active key when there is none.
    ///
    /// # Errors
    /// [`KeyRingError`] when the store fails or a stored key cannot be opened with this master key.
    pub async fn open(
        store: Arc<dyn SigningKeyStore>,
        seal_key: DerivedKey,
        max_token_lifetime: time::Duration,
    ) -> Result<Self, KeyRingError> {
        let ring = Self {
            store,
            seal_key,
            loaded: RwLock::new(Loaded::default()),
            last_reload: Mutex::new(None),
        };
        if ring.store.active_key().await?.is_none() {
            // Several instances starting on an empty database race for the first key: one wins,
            // the others load it.
            match ring.rotate(max_token_lifetime).await {
                Ok(_) | Err(KeyRingError::RotationRaced) => {}
                Err(e) => return Err(e),
            }
        }
        ring.reload().await?;
        Ok(ring)
    }

    /// Generates a new active key; the previous one keeps verifying for `max_token_lifetime`.
    ///
    /// # Errors
    /// [`KeyRingError::RotationRaced`] when another rotation replaced the active key first (nothing
    /// changed; the ring reloaded), other [`KeyRingError`]s when the store or key material fails.
    pub async fn rotate(&self, max_token_lifetime: time::Duration) -> Result<String, KeyRingError> {
        // The compare-and-set reads the store, not this ring's copy: another instance may have
        // rotated since this one last loaded.
        let expected = self.store.active_key().await?.map(|k| k.kid);
        self.rotate_from(expected.as_deref(), max_token_lifetime)
            .await
    }

    /// Replaces the active key `expected` (`None`: there is none yet) with a new one: the
    /// compare-and-set behind [`KeyRing::rotate`], for callers that already know which key they
    /// mean to replace.
    ///
    /// # Errors
    /// [`KeyRingError::RotationRaced`] when `expected` is no longer the active key (nothing changed;
    /// the ring reloaded), other [`KeyRingError`]s when the store or key material fails.
    pub async fn rotate_from(
        &self,
        expected: Option<&str>,
        max_token_lifetime: time::Duration,
    ) -> Result<String, KeyRingError> {
        let key = Es512SigningKey::generate().map_err(|e| KeyRingError::Material(e.to_string()))?;
        let kid = key.kid().to_owned();
        let pkcs8 = key.to_pkcs8();
        let sealed = aead::seal(&self.seal_key, kid.as_bytes(), pkcs8.expose_secret())
            .map_err(|e| KeyRingError::Material(e.to_string()))?;
        let system = SystemScope::internal(InternalRole::KeyRotation);
        let retire_at =
            OffsetDateTime::now_utc() + max_token_lifetime + time::Duration::seconds(60);
        let inserted = self
            .store
            .insert_active_key(
                &system,
                expected,
                NewSigningKey {
                    kid: kid.clone(),
                    public_jwk: key.public_jwk().to_string(),
                    private_sealed: STANDARD.encode(sealed),
                },
                retire_at,
            )
            .await;
        match inserted {
            Ok(()) => {}
            Err(StoreError::Conflict { constraint }) if constraint == "signing_keys.status" => {
                tracing::warn!(target: "security", event = "signing_key.rotation_raced", "another rotation committed first; reloading its key");
                self.reload().await?;
                return Err(KeyRingError::RotationRaced);
            }
            Err(e) => return Err(e.into()),
        }
        self.reload().await?;
        Ok(kid)
    }

    /// Retires keys whose tokens have all expired.
    ///
    /// # Errors
    /// [`KeyRingError::Store`].
    pub async fn retire_due(&self) -> Result<u64, KeyRingError> {
        let n = self
            .store
            .retire_due(
                &SystemScope::internal(InternalRole::KeyRotation),
                OffsetDateTime::now_utc(),
            )
            .await?;
        if n > 0 {
            self.reload().await?;
        }
        Ok(n)
    }

    /// Re-reads the keys from the store.
    ///
    /// # Errors
    /// [`KeyRingError`].
    pub async fn reload(&self) -> Result<(), KeyRingError> {
        let keys = self.store.verification_keys().await?;
        let active = self.store.active_key().await?;
        let mut loaded = Loaded::default();
        for k in &keys {
            let jwk: Value = serde_json::from_str(&k.public_jwk)
                .map_err(|_| KeyRingError::Material("stored JWK is not JSON".into()))?;
            let vk = Es512VerifyingKey::from_jwk(&jwk)
                .map_err(|e| KeyRingError::Material(e.to_string()))?;
            loaded.jwks.push(vk.to_jwk());
            loaded.verifiers.insert(k.kid.clone(), Arc::new(vk));
        }
        if let Some(a) = active {
            let sealed = STANDARD
                .decode(&a.private_sealed)
                .map_err(|_| KeyRingError::Material("stored key is not base64".into()))?;
            let der = aead::open(&self.seal_key, a.kid.as_bytes(), &sealed)
                .map_err(|_| KeyRingError::Material("the active signing key cannot be opened: is this the master key it was sealed with?".into()))?;
            let signer = Es512SigningKey::from_pkcs8(der.expose_secret(), a.kid.clone())
                .map_err(|e| KeyRingError::Material(e.to_string()))?;
            loaded.signer = Some(Arc::new(signer));
        }
        if let Ok(mut slot) = self.loaded.write() {
            *slot = loaded;
        }
        if let Ok(mut t) = self.last_reload.lock() {
            *t = Some(Instant::now());
        }
        Ok(())
    }

    /// The key that signs new tokens.
    #[must_use]
    pub fn signer(&self) -> Option<Arc<Es512SigningKey>> {
        self.loaded.read().ok().and_then(|l| l.signer.clone())
    }

    /// The verifying key for `kid`, reloading once if it is unknown and the last reload is old enough.
    pub async fn verifier(&self, kid: &str) -> Option<Arc<Es512VerifyingKey>> {
        if let Some(k) = self
            .loaded
            .read()
            .ok()
            .and_then(|l| l.verifiers.get(kid).cloned())
        {
            return Some(k);
        }
        let due = self
            .last_reload
            .lock()
            .ok()
            .is_some_and(|t| t.is_none_or(|at| at.elapsed() >= RELOAD_INTERVAL));
        if due && self.reload().await.is_ok() {
            return self
                .loaded
                .read()
                .ok()
                .and_then(|l| l.verifiers.get(kid).cloned());
        }
        None
    }

    /// `/.well-known/jwks.json`: the active and retiring public keys.
    #[must_use]
    pub fn jwks(&self) -> Value {
        let keys = self
            .loaded
            .read()
            .map(|l| l.jwks.clone())
            .unwrap_or_default();
        json!({ "keys": keys })
    }
}
