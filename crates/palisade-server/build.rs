//! Build script: writes the CycloneDX 1.5 SBOM of the `palisade` binary to `$OUT_DIR/sbom.cdx.json`,
//! which `trust::sbom` embeds with `include_str!`, so the SBOM describes the binary that runs it.
//!
//! The component list is the dependency graph cargo resolves from `Cargo.lock` when it builds this
//! package for this target (`cargo tree -e normal -p palisade-server --target $TARGET --locked`):
//! normal edges only (no dev-dependency, no build script dependency) and features resolved as for
//! this package alone, so it is exactly the crates compiled into the binary. Each component has its
//! exact version, a `pkg:cargo` purl, its licence (the SPDX expression of its manifest) and the SHA-256
//! of the published `.crate` from `Cargo.lock`. Procedural macros and what only they pull in run at
//! compile time; they are listed with `scope: "excluded"` so the supply chain stays visible.
//!
//! Cost: one `cargo tree` call (well under a second), only when a manifest or the lockfile changes.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

type BuildResult<T> = Result<T, Box<dyn std::error::Error>>;

/// `(name, version)`.
type Key = (String, String);

/// One package of the tree.
#[derive(Debug, Clone)]
struct Pkg {
    name: String,
    version: String,
    /// A path dependency (a workspace crate): its directory.
    path: Option<String>,
    proc_macro: bool,
    licence: String,
    repository: String,
}

fn main() -> BuildResult<()> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let target = std::env::var("TARGET")?;
    let manifest = manifest_dir.join("Cargo.toml");
    let lock = manifest_dir
        .ancestors()
        .map(|d| d.join("Cargo.lock"))
        .find(|l| l.exists())
        .ok_or("Cargo.lock not found")?;

    let tree = |offline: bool| {
        let mut cmd = Command::new(&cargo);
        cmd.args(["tree", "-e", "normal", "-p", "palisade-server", "--locked"])
            .args([
                "--prefix",
                "depth",
                "--format",
                "{p}\t{l}\t{r}",
                "--charset",
                "ascii",
            ])
            .args(["--target", &target, "--color", "never", "--manifest-path"])
            .arg(&manifest);
        if offline {
            cmd.arg("--offline");
        }
        cmd.output()
    };
    // Offline first: the packages being built are downloaded already. Resolving the lockfile can
    // want manifests a plain `cargo build` has not fetched (dev-dependencies); then ask the registry.
    let mut output = tree(true)?;
    if !output.status.success() {
        output = tree(false)?;
    }
    if !output.status.success() {
        return Err(format!(
            "cargo tree failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    let text = String::from_utf8(output.stdout)?;

    let mut packages: BTreeMap<Key, Pkg> = BTreeMap::new();
    let mut edges: BTreeMap<Key, BTreeSet<Key>> = BTreeMap::new();
    let mut stack: Vec<Key> = Vec::new();
    let mut root: Option<Key> = None;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let digits: String = line.chars().take_while(char::is_ascii_digit).collect();
        let depth: usize = digits.parse()?;
        let rest = line.get(digits.len()..).unwrap_or_default();
        let pkg = parse_package(rest).ok_or_else(|| format!("cargo tree: cannot read `{line}`"))?;
        let key = (pkg.name.clone(), pkg.version.clone());
        stack.truncate(depth);
        match stack.last() {
            Some(parent) => {
                edges.entry(parent.clone()).or_default().insert(key.clone());
            }
            None => root = Some(key.clone()),
        }
        stack.push(key.clone());
        packages.entry(key).or_insert(pkg);
    }
    let root = root.ok_or("cargo tree printed nothing")?;
    let deps = |k: &Key| edges.get(k).cloned().unwrap_or_default();

    // Linked into the binary: reachable without passing through a procedural macro.
    let is_macro = |k: &Key| packages.get(k).is_some_and(|p| p.proc_macro);
    let mut runtime: BTreeSet<Key> = BTreeSet::new();
    let mut macros: BTreeSet<Key> = BTreeSet::new();
    let mut todo = vec![root.clone()];
    while let Some(k) = todo.pop() {
        for d in deps(&k) {
            if is_macro(&d) {
                macros.insert(d);
            } else if runtime.insert(d.clone()) {
                todo.push(d);
            }
        }
    }
    // Compile time only: the macros and whatever they pull in that the binary does not link.
    let mut build_time: BTreeSet<Key> = BTreeSet::new();
    let mut todo: Vec<Key> = macros.into_iter().collect();
    while let Some(k) = todo.pop() {
        if runtime.contains(&k) || !build_time.insert(k.clone()) {
            continue;
        }
        todo.extend(deps(&k));
    }

    let checksums = lock_checksums(&lock)?;
    let mut components = Vec::new();
    for (keys, scope) in [(&runtime, "required"), (&build_time, "excluded")] {
        for k in keys {
            if let Some(p) = packages.get(k) {
                components.push(component(p, Some(scope), &checksums));
            }
        }
    }
    components.sort_by_key(|c| c.get("bom-ref").and_then(Value::as_str).map(str::to_owned));
    let mut dependencies = Vec::new();
    for k in std::iter::once(&root)
        .chain(runtime.iter())
        .chain(build_time.iter())
    {
        let on: Vec<String> = deps(k).iter().map(|(n, v)| purl(n, v)).collect();
        dependencies.push(json!({ "ref": purl(&k.0, &k.1), "dependsOn": on }));
    }
    let root_pkg = packages.get(&root).ok_or("root package missing")?;
    let mut main_component = component(root_pkg, None, &checksums);
    if let Some(obj) = main_component.as_object_mut() {
        obj.insert("type".into(), json!("application"));
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
                    "name": "palisade-server build script (cargo tree -e normal)",
                    "version": root_pkg.version,
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

    let mut directives = vec![
        format!("cargo::rerun-if-changed={}", lock.display()),
        "cargo::rerun-if-changed=build.rs".to_owned(),
        "cargo::rerun-if-env-changed=SOURCE_DATE_EPOCH".to_owned(),
    ];
    if let Some(ws) = lock.parent() {
        directives.push(format!(
            "cargo::rerun-if-changed={}",
            ws.join("Cargo.toml").display()
        ));
    }
    for p in packages.values() {
        if let Some(dir) = &p.path {
            directives.push(format!(
                "cargo::rerun-if-changed={}",
                Path::new(dir).join("Cargo.toml").display()
            ));
        }
    }
    let mut stdout = std::io::stdout().lock();
    for d in directives {
        writeln!(stdout, "{d}")?;
    }
    Ok(())
}

/// Reads `name vX.Y.Z[ (path)][ (proc-macro)]\tlicence\trepository[ (*)]`.
fn parse_package(line: &str) -> Option<Pkg> {
    let mut cols = line.split('\t');
    let p = cols.next()?.trim();
    let licence = cols.next().unwrap_or_default().trim().to_owned();
    let repository = cols
        .next()
        .unwrap_or_default()
        .trim()
        .trim_end_matches("(*)")
        .trim()
        .to_owned();
    let proc_macro = p.contains("(proc-macro)");
    let p = p
        .replace("(proc-macro)", "")
        .trim_end_matches("(*)")
        .trim()
        .to_owned();
    let (name, rest) = p.split_once(" v")?;
    let (version, path) = match rest.split_once(' ') {
        Some((v, extra)) => {
            let extra = extra.trim().trim_start_matches('(').trim_end_matches(')');
            (
                v.to_owned(),
                extra.starts_with('/').then(|| extra.to_owned()),
            )
        }
        None => (rest.to_owned(), None),
    };
    Some(Pkg {
        name: name.to_owned(),
        version,
        path,
        proc_macro,
        licence,
        repository,
    })
}

fn purl(name: &str, version: &str) -> String {
    format!("pkg:cargo/{name}@{version}")
}

fn component(p: &Pkg, scope: Option<&str>, checksums: &BTreeMap<Key, String>) -> Value {
    let mut c = serde_json::Map::new();
    c.insert("type".into(), json!("library"));
    c.insert("bom-ref".into(), json!(purl(&p.name, &p.version)));
    c.insert("name".into(), json!(p.name));
    c.insert("version".into(), json!(p.version));
    if let Some(s) = scope {
        c.insert("scope".into(), json!(s));
    }
    c.insert("purl".into(), json!(purl(&p.name, &p.version)));
    let licence = if p.licence.is_empty() {
        // A crate that ships only a licence file names no SPDX expression.
        json!([{ "license": { "name": "NOASSERTION (see the crate's licence file)" } }])
    } else {
        // Old manifests write `MIT/Apache-2.0`, which means `MIT OR Apache-2.0` in SPDX.
        json!([{ "expression": p.licence.replace('/', " OR ") }])
    };
    c.insert("licenses".into(), licence);
    if let Some(sum) = checksums.get(&(p.name.clone(), p.version.clone())) {
        c.insert(
            "hashes".into(),
            json!([{ "alg": "SHA-256", "content": sum }]),
        );
    }
    let mut refs = Vec::new();
    if !p.repository.is_empty() {
        refs.push(json!({ "type": "vcs", "url": p.repository }));
    }
    if p.path.is_none() {
        refs.push(json!({ "type": "distribution", "url": format!("https://crates.io/crates/{}/{}", p.name, p.version) }));
    }
    if !refs.is_empty() {
        c.insert("externalReferences".into(), json!(refs));
    }
    Value::Object(c)
}

/// `(name, version) → checksum` from `Cargo.lock` (registry packages carry the `.crate`'s SHA-256).
fn lock_checksums(lock: &Path) -> BuildResult<BTreeMap<Key, String>> {
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
