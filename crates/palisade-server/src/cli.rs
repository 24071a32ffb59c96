//! The `palisade` command line: `serve` (default), `migrate`, `bootstrap`, `keys rotate`,
//! `audit verify|prune`, `tenants allowed-ips`, `config check`, `sbom`.
//!
//! Human output (banner, verdicts) goes to stderr; logs are JSON lines on stderr too, redacted.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Level, Mode, Overrides, Settings};

/// Palisade: a security-first multi-tenant API server.
#[derive(Debug, Parser)]
#[command(name = "palisade", version, about)]
pub struct Cli {
    /// Configuration file (default: ./palisade.toml when it exists).
    #[arg(long, global = true, env = "PALISADE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on (overrides server.listen).
    #[arg(long, global = true)]
    pub listen: Option<SocketAddr>,
    /// Database URL (overrides database.url).
    #[arg(long, global = true)]
    pub database_url: Option<String>,
    /// development or production (overrides mode).
    #[arg(long, global = true, value_parser = parse_mode)]
    pub mode: Option<Mode>,
    /// Data directory (overrides data_dir).
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Option<Command>,
}

fn parse_mode(s: &str) -> Result<Mode, String> {
    match s {
        "development" => Ok(Mode::Development),
        "production" => Ok(Mode::Production),
        _ => Err("expected development or production".to_owned()),
    }
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the API server (the default).
    Serve,
    /// Run the database migrations and exit.
    Migrate,
    /// Create the system tenant and owner user if missing, and exit.
    Bootstrap,
    /// Signing keys.
    Keys {
        /// What to do with the keys.
        #[command(subcommand)]
        action: KeysAction,
    },
    /// The audit trail.
    Audit {
        /// What to do with the audit trail.
        #[command(subcommand)]
        action: AuditAction,
    },
    /// Records of declared resources.
    Records {
        /// What to do with the records.
        #[command(subcommand)]
        action: RecordsAction,
    },
    /// Print the CycloneDX 1.5 SBOM of this binary (JSON, embedded at build time) on stdout.
    Sbom,
    /// Tenants: recovery tools that work without the API.
    Tenants {
        /// What to do.
        #[command(subcommand)]
        action: TenantsAction,
    },
    /// Configuration tools.
    Config {
        /// What to do with the configuration.
        #[command(subcommand)]
        action: ConfigAction,
    },
}

/// `palisade keys ...`.
#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// Make a new ES512 key active at once; the previous one keeps verifying until its tokens expire.
    Rotate,
}

/// `palisade audit ...`.
#[derive(Debug, Subcommand)]
pub enum AuditAction {
    /// Recompute every tenant's hash chain (or one tenant's) and name the first invalid entry;
    /// exits non-zero when a chain does not verify.
    Verify {
        /// Only this tenant (its id).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Prune entries past their category's retention (`[audit.retention]`, default `[audit]
    /// retention_days`), leaving signed checkpoints.
    Prune,
}

/// `palisade records ...`.
#[derive(Debug, Subcommand)]
pub enum RecordsAction {
    /// Purge, now, the records older than their resource's `retention_days` (soft-deleted ones
    /// too), each purge audited.
    Prune,
}

/// `palisade tenants ...`.
#[derive(Debug, Subcommand)]
pub enum TenantsAction {
    /// Replace a tenant's IP allowlist: the way back after a lock-out (for example a system
    /// administrator who fenced the system tenant away from their own address). Audited as
    /// `tenant.update` by `system:cli`.
    AllowedIps {
        /// The tenant's id or slug.
        tenant: String,
        /// Remove the list: any address may act on the tenant again.
        #[arg(long, conflicts_with = "set")]
        clear: bool,
        /// The new list (CIDRs or addresses); repeat the flag for several.
        #[arg(long, required_unless_present = "clear")]
        set: Vec<String>,
    },
}

/// `palisade config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Print every verdict about the configuration; exit non-zero on errors.
    Check,
}

/// Talks to the operator on stderr. A closed stderr must not take the server down, so write errors
/// are ignored (`eprintln!` would panic on them).
fn say(text: &str) {
    use std::io::Write;
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{text}");
}

/// Runs the CLI.
pub async fn run(cli: Cli) -> ExitCode {
    if matches!(cli.command, Some(Command::Sbom)) {
        // Needs no configuration: the SBOM describes the binary, not the deployment.
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        return match writeln!(out, "{}", crate::trust::sbom::SBOM_JSON) {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::FAILURE,
        };
    }
    let overrides = Overrides {
        listen: cli.listen,
        database_url: cli.database_url.clone(),
        mode: cli.mode,
        data_dir: cli.data_dir.clone(),
    };
    let settings = match Settings::load(cli.config.as_deref(), &overrides) {
        Ok(s) => s,
        Err(e) => {
            say(&format!("palisade: configuration error: {e}"));
            return ExitCode::from(2);
        }
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::Config {
            action: ConfigAction::Check,
        } => config_check(&settings),
        Command::Migrate => {
            let _log = crate::logging::init(&settings.log.level);
            match crate::app::open_database(&settings, true).await {
                Ok(_) => {
                    say(&format!(
                        "palisade: migrations applied to {}",
                        settings.database_display()
                    ));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    say(&format!("palisade: {e}"));
                    ExitCode::FAILURE
                }
            }
        }
        Command::Bootstrap => {
            let _log = crate::logging::init(&settings.log.level);
            match crate::app::build(settings.clone()).await {
                Ok(app) => match crate::app::bootstrap(&app.state).await {
                    Ok(o) => {
                        say(&format!(
                            "palisade: system tenant `{}` ({}) and owner {} are in place",
                            settings.bootstrap.system_tenant,
                            o.system_tenant,
                            settings.bootstrap.owner_email
                        ));
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        say(&format!("palisade: {e}"));
                        ExitCode::FAILURE
                    }
                },
                Err(e) => {
                    say(&format!("palisade: {e}"));
                    ExitCode::FAILURE
                }
            }
        }
        Command::Keys {
            action: KeysAction::Rotate,
        } => {
            let _log = crate::logging::init(&settings.log.level);
            let ttl = time::Duration::seconds(
                i64::try_from(settings.auth.access_ttl_secs).unwrap_or(900),
            );
            match crate::app::build(settings).await {
                Ok(app) => {
                    let keys = app.state.auth().tokens.keys().clone();
                    match keys.rotate(ttl).await {
                        Ok(kid) => {
                            let _ = keys.retire_due().await;
                            say(&format!(
                                "palisade: new signing key {kid} is active; the previous key verifies until its tokens expire"
                            ));
                            ExitCode::SUCCESS
                        }
                        Err(e) => {
                            say(&format!("palisade: {e}"));
                            ExitCode::FAILURE
                        }
                    }
                }
                Err(e) => {
                    say(&format!("palisade: {e}"));
                    ExitCode::FAILURE
                }
            }
        }
        Command::Audit { action } => audit(settings, action).await,
        Command::Records {
            action: RecordsAction::Prune,
        } => prune_records(settings).await,
        Command::Tenants {
            action: TenantsAction::AllowedIps { tenant, clear, set },
        } => {
            let _log = crate::logging::init(&settings.log.level);
            let app = match crate::app::build(settings).await {
                Ok(app) => app,
                Err(e) => {
                    say(&format!("palisade: {e}"));
                    return ExitCode::FAILURE;
                }
            };
            let entries = if clear { Vec::new() } else { set };
            match crate::net::recover_tenant_allowed_ips(&app.state, &tenant, &entries).await {
                Ok(t) if t.allowed_ips.is_empty() => {
                    say(&format!(
                        "palisade: tenant `{}` ({}) accepts requests from any address",
                        t.slug.as_str(),
                        t.id
                    ));
                    ExitCode::SUCCESS
                }
                Ok(t) => {
                    say(&format!(
                        "palisade: tenant `{}` ({}) accepts requests from {}",
                        t.slug.as_str(),
                        t.id,
                        t.allowed_ips.join(", ")
                    ));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    say(&format!("palisade tenants allowed-ips: {e}"));
                    ExitCode::FAILURE
                }
            }
        }
        Command::Serve => serve(settings).await,
        Command::Sbom => ExitCode::SUCCESS,
    }
}

/// Builds the application for a maintenance command, or says why not.
async fn build_for_maintenance(settings: Settings) -> Result<crate::app::App, ExitCode> {
    crate::app::build(settings).await.map_err(|e| {
        say(&format!("palisade: {e}"));
        ExitCode::FAILURE
    })
}

/// Reports how many items a retention run removed, or its error.
fn report_pruned(
    command: &str,
    what: &str,
    outcome: Result<u64, palisade_store::StoreError>,
) -> ExitCode {
    match outcome {
        Ok(n) => {
            say(&format!("palisade {command}: {n} {what}"));
            ExitCode::SUCCESS
        }
        Err(e) => {
            say(&format!("palisade: {e}"));
            ExitCode::FAILURE
        }
    }
}

async fn audit(settings: Settings, action: AuditAction) -> ExitCode {
    let _log = crate::logging::init(&settings.log.level);
    let app = match build_for_maintenance(settings).await {
        Ok(app) => app,
        Err(code) => return code,
    };
    match action {
        AuditAction::Verify { tenant } => {
            let only = match tenant
                .as_deref()
                .map(str::parse::<palisade_domain::TenantId>)
            {
                None => None,
                Some(Ok(id)) => Some(id),
                Some(Err(_)) => {
                    say("palisade audit verify: --tenant must be a tenant id");
                    return ExitCode::FAILURE;
                }
            };
            match crate::audit_jobs::verify_all(&app.state, only).await {
                Ok(reports) => {
                    let mut ok = true;
                    for (t, r) in &reports {
                        ok &= r.valid;
                        say(&match r.first_invalid_seq {
                            None => format!(
                                "ok       {} ({}): {} entries, head {}",
                                t.slug.as_str(),
                                t.id,
                                r.entries,
                                r.head
                            ),
                            Some(seq) => format!(
                                "INVALID  {} ({}): first invalid entry at seq {seq}",
                                t.slug.as_str(),
                                t.id
                            ),
                        });
                    }
                    if ok {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(palisade_store::StoreError::NotFound) => {
                    say("palisade audit verify: no such tenant");
                    ExitCode::FAILURE
                }
                Err(e) => {
                    say(&format!("palisade: {e}"));
                    ExitCode::FAILURE
                }
            }
        }
        AuditAction::Prune => report_pruned(
            "audit prune",
            "entries pruned",
            crate::audit_jobs::prune_all(&app.state).await,
        ),
    }
}

async fn prune_records(settings: Settings) -> ExitCode {
    let _log = crate::logging::init(&settings.log.level);
    match build_for_maintenance(settings).await {
        Ok(app) => report_pruned(
            "records prune",
            "records purged",
            crate::record_jobs::purge_all(&app.state).await,
        ),
        Err(code) => code,
    }
}

fn config_check(settings: &Settings) -> ExitCode {
    let verdicts = settings.verdicts();
    say(&format!(
        "palisade config check: mode {}, database {}",
        settings.mode.as_str(),
        settings.database_display()
    ));
    if verdicts.is_empty() {
        say("ok: no findings");
    }
    for v in &verdicts {
        say(&v.to_string());
    }
    let errors = verdicts.iter().filter(|v| v.level == Level::Error).count();
    if errors > 0 {
        say(&format!(
            "{errors} error(s): `palisade serve` would refuse to start"
        ));
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

async fn serve(settings: Settings) -> ExitCode {
    let _log = crate::logging::init(&settings.log.level);
    for v in settings
        .verdicts()
        .iter()
        .filter(|v| v.level != Level::Error)
    {
        say(&v.to_string());
    }
    let listen = settings.server.listen;
    let mode = settings.mode;
    let db = settings.database_display();
    let owner = settings.bootstrap.owner_email.clone();
    let app = match crate::app::build(settings).await {
        Ok(app) => app,
        Err(e) => {
            say(&format!("palisade: refusing to start: {e}"));
            return ExitCode::FAILURE;
        }
    };
    app.start_background().await;
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            say(&format!("palisade: cannot listen on {listen}: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let addr = listener.local_addr().unwrap_or(listen);
    let routes = app.state.routes().map_or(0, |r| r.entries().len());
    let checks = app.state.trust().all();
    let passing = checks.iter().filter(|r| r.passed).count();
    say(&format!(
        "\n  Palisade {} is listening on http://{addr}\n  mode:      {}\n  database:  {db}\n  state:     {}\n  routes:    {routes}, capabilities: {}\n  owner:     {owner} (system_admin of the system tenant)\n  trust:     {passing}/{} self-checks pass; posture at http://{addr}/trust\n\n  Next:  curl http://{addr}/health\n         curl http://{addr}/openapi.json\n         palisade config check   (what production would refuse)\n",
        env!("CARGO_PKG_VERSION"),
        mode.as_str(),
        app.state.settings().state.url,
        app.state.capabilities().len(),
        checks.len(),
    ));
    // Retire keys whose tokens have all expired, and pick up rotations made by other instances.
    let keys = app.state.auth().tokens.keys().clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(300));
        loop {
            tick.tick().await;
            if let Err(e) = keys.retire_due().await {
                tracing::error!(target: "palisade::keys", error = %e, "retiring signing keys failed");
            }
            if let Err(e) = keys.reload().await {
                tracing::error!(target: "palisade::keys", error = %e, "reloading signing keys failed");
            }
        }
    });
    // Retention: purge records past their resource's retention_days (each purge audited), then prune
    // audit entries past their category's retention, leaving signed checkpoints.
    let state = app.state.clone();
    let every = state.settings().audit.retention_interval_secs.max(60);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(every));
        loop {
            tick.tick().await;
            match crate::record_jobs::purge_all(&state).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(target: "palisade::retention", purged = n, "record retention")
                }
                Err(e) => {
                    tracing::error!(target: "palisade::retention", error = %e, "record retention failed");
                }
            }
            match crate::audit_jobs::prune_all(&state).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(target: "palisade::audit", pruned = n, "audit retention"),
                Err(e) => {
                    tracing::error!(target: "palisade::audit", error = %e, "audit retention failed");
                }
            }
        }
    });
    let state = app.state.clone();
    let served = crate::app::serve(listener, app.router, shutdown_signal()).await;
    // Graceful shutdown: in-flight requests are done; write the API-key uses recorded since the
    // last periodic flush.
    if let Err(e) = state.flush_key_usage().await {
        tracing::error!(target: "palisade::api_keys", error = %e, "writing API-key last_used_at at shutdown failed");
    }
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            say(&format!("palisade: server error: {e}"));
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
