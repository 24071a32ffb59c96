//! Sign-in and tokens: the ES512 key ring, access-token issue and verification, and the bearer
//! authenticator. Routes live in `routes::auth`.

pub mod api_keys;
pub mod key_usage;
pub mod keyring;
pub mod tokens;
