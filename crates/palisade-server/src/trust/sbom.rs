//! The SBOM of this binary: CycloneDX 1.5 JSON written by `build.rs` from the resolved dependency
//! graph of `Cargo.lock` and embedded at compile time, so it describes exactly the binary serving it.

use serde::Serialize;
use utoipa::ToSchema;

/// `v[key]` without the panicking `Index` (absent keys and non-objects read as `null`).
fn at<'a>(v: &'a serde_json::Value, key: &str) -> &'a serde_json::Value {
    static NULL: serde_json::Value = serde_json::Value::Null;
    v.get(key).unwrap_or(&NULL)
}

/// The CycloneDX document, as built.
pub const SBOM_JSON: &str = include_str!(concat!(env!("OUT_DIR"), "/sbom.cdx.json"));

/// The media type of [`SBOM_JSON`].
pub const MEDIA_TYPE: &str = "application/vnd.cyclonedx+json; version=1.5";

/// What the SBOM holds, counted.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct SbomSummary {
    /// `specVersion`.
    pub spec_version: Option<String>,
    /// Components linked into the binary (`scope: required`).
    pub linked: usize,
    /// Components used only while compiling (procedural macros and their dependencies).
    pub build_time: usize,
    /// Components without a purl or a version (should be 0).
    pub without_purl_or_version: usize,
    /// Components without a licence (should be 0).
    pub without_licence: usize,
}

/// Counts the embedded SBOM's components.
#[must_use]
pub fn summary() -> SbomSummary {
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(SBOM_JSON) else {
        return SbomSummary::default();
    };
    let components = at(&doc, "components")
        .as_array()
        .cloned()
        .unwrap_or_default();
    let scope = |c: &serde_json::Value, s: &str| at(c, "scope").as_str() == Some(s);
    SbomSummary {
        spec_version: at(&doc, "specVersion").as_str().map(str::to_owned),
        linked: components.iter().filter(|c| scope(c, "required")).count(),
        build_time: components.iter().filter(|c| scope(c, "excluded")).count(),
        without_purl_or_version: components
            .iter()
            .filter(|c| at(c, "purl").as_str().is_none() || at(c, "version").as_str().is_none())
            .count(),
        without_licence: components
            .iter()
            .filter(|c| at(c, "licenses").as_array().is_none_or(Vec::is_empty))
            .count(),
    }
}
