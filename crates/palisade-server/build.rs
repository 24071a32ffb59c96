//! Build script: writes the CycloneDX 1.5 SBOM of the `palisade` binary to `$OUT_DIR/sbom.cdx.json`,
//! which `trust::sbom` embeds with `include_str!`, so the SBOM describes the binary that runs it.
//!
//! The component list is the dependency graph cargo resolved from `Cargo.lock` for this target
//! (`cargo metadata --locked --offline --filter-platform $TARGET`), walked from `palisade-server`
//! along normal (non-dev, non-build) edges: exactly the crates linked into the binary, with their
//! exact versions, `pkg:cargo` purls, licences (SPDX expressions from each crate's manifest) and the
//! SHA-256 of the published `.crate` from `Cargo.lock`. Procedural macros and their dependencies run
//! only at compile time; they are listed with `scope: "excluded"` so the supply chain stays visible.
//!
//! Cost: one `cargo metadata` call (about a second), only when a manifest or the lockfile changes.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

/// `v[key]` without the panicking `Index` (absent keys and non-objects read as `null`).
fn at<'a>(v: &'a Value, key: &str) -> &'a Value {
    static NULL: Value = Value::Null;
    v.get(key).unwrap_or(&NULL)
}

type BuildResult<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> BuildResult<()> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let target = std::env::var("TARGET")?;
    let manifest = manifest_dir.join("Cargo.toml");

    let metadata = |offline: bool| {
        let mut cmd = Command::new(&cargo);
        cmd.args(["metadata", "--format-version", "1", "--locked"])
            .args(["--filter-platform", &target, "--manifest-path"])
            .arg(&manifest);
        if offline {
            cmd.arg("--offline");
        }
        cmd.output()
    };
    // Offline first: every package is usually downloaded already. `cargo metadata` also wants the
    // manifests of dev-dependencies, which a plain `cargo build` has not fetched; then ask the registry.
    let mut output = metadata(true)?;
    if !output.status.success() {
        output = metadata(false)?;
    }
    if !output.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    let meta: Value = serde_json::from_slice(&output.stdout)?;
    let workspace_root = PathBuf::from(
        at(&meta, "workspace_root")
            .as_str()
            .ok_or("cargo metadata: no workspace_root")?,
    );
    let lock = workspace_root.join("Cargo.lock");
    let checksums = lock_checksums(&lock)?;

    let mut directives = vec![
        format!("cargo::rerun-if-changed={}", lock.display()),
        format!(
            "cargo::rerun-if-changed={}",
            workspace_root.join("Cargo.toml").display()
        ),
        "cargo::rerun-if-changed=build.rs".to_owned(),
        "cargo::rerun-if-env-changed=SOURCE_DATE_EPOCH".to_owned(),
    ];

    let packages: BTreeMap<&str, &Value> = at(&meta, "packages")
        .as_array()
        .ok_or("cargo metadata: no packages")?
        .iter()
        .filter_map(|p| Some((at(p, "id").as_str()?, p)))
        .collect();
    for p in packages.values() {
        if at(p, "source").is_null()
            && let Some(m) = at(p, "manifest_path").as_str()
        {
            directives.push(format!("cargo::rerun-if-changed={m}"));
        }
    }
    let nodes: BTreeMap<&str, &Value> = at(at(&meta, "resolve"), "nodes")
        .as_array()
        .ok_or("cargo metadata: no resolve graph")?
        .iter()
        .filter_map(|n| Some((at(n, "id").as_str()?, n)))
        .collect();
    let root = packages
        .iter()
        .find(|(_, p)| at(p, "name") == "palisade-server" && at(p, "source").is_null())
        .map(|(id, _)| *id)
        .ok_or("cargo metadata: palisade-server not found")?;

    let is_proc_macro = |id: &str| {
        packages.get(id).is_some_and(|p| {
            at(p, "targets").as_array().is_some_and(|ts| {
                ts.iter().any(|t| {
                    at(t, "kind")
                        .as_array()
                        .is_some_and(|k| k.iter().any(|k| k == "proc-macro"))
                })
            })
        })
    };
    // Normal edges only: dev-dependencies never reach the binary; build-dependencies run on the host.
    let normal_deps = |id: &str| -> Vec<&str> {
        nodes
            .get(id)
            .and_then(|n| at(n, "deps").as_array())
            .map(|deps| {
                deps.iter()
                    .filter(|d| {
                        at(d, "dep_kinds")
                            .as_array()
                            .is_some_and(|ks| ks.iter().any(|k| at(k, "kind").is_null()))
                    })
                    .filter_map(|d| at(d, "pkg").as_str())
                    .collect()
            })
            .unwrap_or_default()
    };

    // Linked into the binary: reachable without passing through a procedural macro.
    let mut runtime: BTreeSet<&str> = BTreeSet::new();
    let mut macros: BTreeSet<&str> = BTreeSet::new();
    let mut stack = vec![root];
    while let Some(id) = stack.pop() {
        for dep in normal_deps(id) {
            if is_proc_macro(dep) {
                macros.insert(dep);
            } else if runtime.insert(dep) {
                stack.push(dep);
            }
        }
    }
    // Compile time only: the macros and whatever they pull in that the binary does not link.
    let mut build_time: BTreeSet<&str> = BTreeSet::new();
    let mut stack: Vec<&str> = macros.iter().copied().collect();
    while let Some(id) = stack.pop() {
        if runtime.contains(id) || !build_time.insert(id) {
            continue;
        }
        stack.extend(normal_deps(id));
    }

    let root_pkg = packages.get(root).ok_or("root package missing")?;
    let mut components = Vec::new();
    for (ids, scope) in [(&runtime, "required"), (&build_time, "excluded")] {
        for id in ids.iter() {
            if let Some(p) = packages.get(id) {
                components.push(component(p, scope, &checksums));
            }
        }
    }
    components.sort_by(|a, b| {
        (at(a, "name").as_str(), at(a, "version").as_str())
            .cmp(&(at(b, "name").as_str(), at(b, "version").as_str()))
    });
    let listed: BTreeSet<&str> = runtime.iter().chain(build_time.iter()).copied().collect();
    let mut dependencies = Vec::new();
    for id in std::iter::once(root).chain(listed.iter().copied()) {
        let Some(p) = packages.get(id) else { continue };
        let mut on: Vec<String> = normal_deps(id)
            .into_iter()
            .filter_map(|d| packages.get(d).map(|p| bom_ref(p)))
            .collect();
        on.sort();
        on.dedup();
        dependencies.push(json!({ "ref": bom_ref(p), "dependsOn": on }));
    }

    let mut main_component = component(root_pkg, "required", &checksums);
    if let Some(obj) = main_component.as_object_mut() {
        obj.insert("type".into(), json!("application"));
        obj.remove("scope");
    }
    let bom = json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "version": 1,
        "metadata": {
            "timestamp": timestamp(),
            "tools": {
                "components": [{
                    "type": "application",
                    "name": "palisade-server build script (cargo metadata)",
                    "version": at(root_pkg, "version"),
                }]
            },
            "component": main_component,
            "properties": [
                { "name": "palisade:target", "value": target },
                { "name": "palisade:profile", "value": std::env::var("PROFILE").unwrap_or_default() },
            ],
        },
        "components": components,
        "dependencies": dependencies,
    });
    std::fs::write(
        out_dir.join("sbom.cdx.json"),
        serde_json::to_string_pretty(&bom)?,
    )?;
    let mut stdout = std::io::stdout().lock();
    for d in directives {
        writeln!(stdout, "{d}")?;
    }
    Ok(())
}

fn bom_ref(p: &Value) -> String {
    purl(p)
}

fn purl(p: &Value) -> String {
    format!(
        "pkg:cargo/{}@{}",
        at(p, "name").as_str().unwrap_or_default(),
        at(p, "version").as_str().unwrap_or_default()
    )
}

fn component(p: &Value, scope: &str, checksums: &BTreeMap<(String, String), String>) -> Value {
    let name = at(p, "name").as_str().unwrap_or_default();
    let version = at(p, "version").as_str().unwrap_or_default();
    let mut c = serde_json::Map::new();
    c.insert("type".into(), json!("library"));
    c.insert("bom-ref".into(), json!(bom_ref(p)));
    c.insert("name".into(), json!(name));
    c.insert("version".into(), json!(version));
    c.insert("scope".into(), json!(scope));
    c.insert("purl".into(), json!(purl(p)));
    if let Some(d) = at(p, "description").as_str() {
        c.insert("description".into(), json!(d.trim()));
    }
    let licence = match (at(p, "license").as_str(), at(p, "license_file").as_str()) {
        // Old manifests write `MIT/Apache-2.0`, which means `MIT OR Apache-2.0` in SPDX.
        (Some(l), _) => json!([{ "expression": l.replace('/', " OR ") }]),
        (None, Some(f)) => {
            json!([{ "license": { "name": format!("see the crate's {}", file_name(f)) } }])
        }
        (None, None) => json!([{ "license": { "name": "NOASSERTION" } }]),
    };
    c.insert("licenses".into(), licence);
    if let Some(sum) = checksums.get(&(name.to_owned(), version.to_owned())) {
        c.insert(
            "hashes".into(),
            json!([{ "alg": "SHA-256", "content": sum }]),
        );
    }
    let mut refs = Vec::new();
    if let Some(r) = at(p, "repository").as_str() {
        refs.push(json!({ "type": "vcs", "url": r }));
    }
    if at(p, "source")
        .as_str()
        .is_some_and(|s| s.starts_with("registry+"))
    {
        refs.push(json!({ "type": "distribution", "url": format!("https://crates.io/crates/{name}/{version}") }));
    }
    if !refs.is_empty() {
        c.insert("externalReferences".into(), json!(refs));
    }
    Value::Object(c)
}

fn file_name(path: &str) -> String {
    Path::new(path)
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.to_owned())
}

/// `(name, version) → checksum` from `Cargo.lock` (registry packages carry the `.crate`'s SHA-256).
fn lock_checksums(lock: &Path) -> BuildResult<BTreeMap<(String, String), String>> {
    let text = std::fs::read_to_string(lock)?;
    let mut out = BTreeMap::new();
    for block in text.split("[[package]]") {
        let field = |key: &str| {
            block.lines().find_map(|l| {
                let (k, v) = l.split_once(" = ")?;
                (k.trim() == key).then(|| v.trim().trim_matches('"').to_owned())
            })
        };
        if let (Some(n), Some(v), Some(c)) = (field("name"), field("version"), field("checksum")) {
            out.insert((n, v), c);
        }
    }
    Ok(out)
}

/// RFC 3339 UTC: `SOURCE_DATE_EPOCH` when set (reproducible builds), else now.
fn timestamp() -> String {
    let secs = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| i64::try_from(d.as_secs()).unwrap_or(0))
                .unwrap_or(0)
        });
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
