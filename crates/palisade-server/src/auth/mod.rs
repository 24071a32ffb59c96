//! Sign-in and tokens: the ES512 key ring, access-token issue and verification, and the bearer
//! authenticator, and browser sessions (cookie + CSRF). Routes live in `routes::auth`.

pub mod api_keys;
pub mod key_usage;
pub mod keyring;
pub mod sessions;
pub mod tokens;
