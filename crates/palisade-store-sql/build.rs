//! Rebuilds the crate when a migration is added or edited: `sqlx::migrate!` embeds the
//! `migrations/` directories at compile time, and cargo would not otherwise notice a new file.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
