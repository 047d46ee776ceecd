//! The `volctl` command.

mod cli;

use anyhow::{bail, Context, Result};
use api_types::{schema, Document, DocumentKind};
use clap::Parser;
use cli::{
    Cli, Command, KindArg, KmsArgs, KmsServerCommand, MetaOp, ModeArg, Output, Target, WipeArg,
};
use controller::apply::{self, ApplyMode, ApplyOptions};
use controller::boot::{self, BootOptions};
use controller::converge::{converge, Mode};
use controller::node::meta;
use controller::node::status::BootStatus;
use controller::reset::{self, WipeMode};
use controller::volume::VolumeSpec;
use providers::{read_node_uuid, ProviderEnv, SMBIOS_UUID_PATH};
use providers::{KmsClientOptions, TpmOptions};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", report(&e));
            ExitCode::from(1)
        }
    }
}

/// The error and its causes, each once: a cause whose text the message
/// before it already holds (errors that print their source) is skipped.
fn report(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Validate { files, output } => Ok(validate(&files, output)),
        Command::Schema { kind } => {
            let s = match kind {
                None => schema::for_all_kinds(),
                Some(KindArg::VolumeConfig) => schema::for_kind(DocumentKind::VolumeConfig),
                Some(KindArg::UserVolumeConfig) => schema::for_kind(DocumentKind::UserVolumeConfig),
            };
            println!("{}", serde_json::to_string_pretty(&s)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Plan {
            target,
            detailed_exitcode,
        } => {
            let o = run_converge(&target, Mode::DryRun)?;
            Ok(if detailed_exitcode && !o {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Converge { target } => {
            run_converge(&target, Mode::Apply)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Boot {
            disks,
            files,
            state_mount,
            status_file,
            node_uuid,
            parallel,
            maintenance_timeout,
            kms,
            output,
        } => {
            let opts = BootOptions {
                disks: disks.disks,
                config_files: files,
                state_mount,
                status_file,
                node_uuid: read_node_uuid(node_uuid.as_deref(), Path::new(SMBIOS_UUID_PATH))
                    .map_err(|e| e.to_string()),
                parallel,
                maintenance_timeout: maintenance_timeout.map(std::time::Duration::from_secs),
                kms: kms_options(&kms)?,
                tpm: tpm_options(&kms),
            };
            let rt = runtime()?;
            let status = rt.block_on(boot::boot(&opts))?;
            print_status(&status, output)?;
            Ok(if status.all_ready() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            })
        }
        Command::Status {
            status_file,
            output,
        } => {
            let status = BootStatus::load(&status_file)
                .with_context(|| format!("reading {}", status_file.display()))?;
            print_status(&status, output)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Close { status_file } => {
            let mut status = BootStatus::load(&status_file)
                .with_context(|| format!("reading {}", status_file.display()))?;
            let (done, errors) = boot::close(&mut status);
            status
                .save(&status_file)
                .with_context(|| format!("writing {}", status_file.display()))?;
            for d in done {
                println!("{d}");
            }
            for e in &errors {
                eprintln!("error: {e}");
            }
            Ok(if errors.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Meta { disks, device, op } => meta_command(disks.disks, device, op),
        Command::KmsServer {
            command: Some(KmsServerCommand::Genkey),
            ..
        } => {
            println!("{}", kms::keyring::Keyring::generate_line());
            Ok(ExitCode::SUCCESS)
        }
        Command::KmsServer {
            command: None,
            listen,
            master_key_file,
            tls_cert,
            tls_key,
            client_ca,
            plaintext,
            max_connections,
            handshake_timeout,
            idle_timeout,
        } => {
            let limits = kms::listener::Limits {
                max_connections: max_connections
                    .unwrap_or_else(kms::listener::default_max_connections),
                handshake_timeout: std::time::Duration::from_secs(handshake_timeout),
                idle_timeout: std::time::Duration::from_secs(idle_timeout),
            };
            let keys = master_key_file.context("--master-key-file is required")?;
            let keyring = kms::keyring::Keyring::load(&keys)?;
            let read =
                |p: &PathBuf| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
            let tls = match (tls_cert, tls_key) {
                (Some(c), Some(k)) => Some(kms::server::ServerTls {
                    cert_pem: read(&c)?,
                    key_pem: read(&k)?,
                    client_ca_pem: client_ca.as_ref().map(read).transpose()?,
                }),
                _ if plaintext => None,
                _ => bail!("give --tls-cert and --tls-key (or --plaintext, for tests only)"),
            };
            let rt = runtime()?;
            rt.block_on(async {
                let listener = tokio::net::TcpListener::bind(&listen).await.with_context(|| format!("listening on {listen}"))?;
                tracing::info!(addr = %listener.local_addr()?, tls = tls.is_some(), key_id = keyring.current_id(), "KMS server listening");
                eprintln!("volctl kms-server listening on {}", listener.local_addr()?);
                kms::server::serve_with_limits(listener, keyring, tls, limits, shutdown_signal())
                    .await?;
                eprintln!("volctl kms-server stopped");
                Ok::<_, anyhow::Error>(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::ApplyConfig {
            files,
            mode,
            dry_run,
            insecure,
            status_file,
            disks,
            node_uuid,
            reboot_command,
            kms,
            output,
        } => {
            let opts = ApplyOptions {
                files,
                mode: match mode {
                    ModeArg::Auto => ApplyMode::Auto,
                    ModeArg::Staged => ApplyMode::Staged,
                    ModeArg::Reboot => ApplyMode::Reboot,
                    ModeArg::NoReboot => ApplyMode::NoReboot,
                },
                dry_run,
                insecure,
                status_file,
                disks: disks.disks,
                node_uuid: read_node_uuid(node_uuid.as_deref(), Path::new(SMBIOS_UUID_PATH))
                    .map_err(|e| e.to_string()),
                reboot_command,
                kms: kms_options(&kms)?,
                tpm: tpm_options(&kms),
            };
            let report = runtime()?.block_on(apply::apply(&opts))?;
            match (output, insecure) {
                (Output::Json, _) => println!("{}", serde_json::to_string_pretty(&report)?),
                (Output::Text, true) if report.stored.is_some() => {
                    println!("config delivered to the boot waiting in maintenance mode")
                }
                (Output::Text, true) => println!("config valid (dry run): nothing delivered"),
                (Output::Text, false) => print!("{}", apply::report_text(&report)),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Reset {
            system_labels_to_wipe,
            wipe_mode,
            reboot,
            disks,
            status_file,
            reboot_command,
        } => {
            let disks = if disks.disks.is_empty() {
                controller::node::disks::system_disks()
            } else {
                disks.disks
            };
            let mut status = BootStatus::load(&status_file).ok();
            let mode = match wipe_mode {
                WipeArg::Fast => WipeMode::Fast,
                WipeArg::Full => WipeMode::Full,
            };
            let done = reset::reset(&system_labels_to_wipe, &disks, status.as_mut(), mode)?;
            for d in done {
                println!("{d}");
            }
            if let Some(st) = status {
                st.save(&status_file)
                    .with_context(|| format!("writing {}", status_file.display()))?;
            }
            if reboot {
                let ok = std::process::Command::new("sh")
                    .arg("-c")
                    .arg(&reboot_command)
                    .status()
                    .is_ok_and(|s| s.success());
                if !ok {
                    bail!("wiped, but `{reboot_command}` failed; reboot by hand");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// KMS client options from the command line.
fn kms_options(args: &KmsArgs) -> Result<KmsClientOptions> {
    let read = |p: &PathBuf| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let identity = match (&args.kms_client_cert, &args.kms_client_key) {
        (Some(c), Some(k)) => Some((read(c)?, read(k)?)),
        _ => None,
    };
    Ok(KmsClientOptions {
        ca_pem: args.kms_ca_file.as_ref().map(read).transpose()?,
        identity_pem: identity,
        ..Default::default()
    })
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// TPM options from the command line.
fn tpm_options(args: &KmsArgs) -> TpmOptions {
    let mut o = TpmOptions::default();
    if let Some(t) = &args.tpm_tcti {
        o.tcti = t.clone();
    }
    o.efivars_dir = args.efivars_dir.clone();
    o
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

fn print_status(status: &BootStatus, output: Output) -> Result<()> {
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(status)?),
        Output::Text => print!("{}", status.table()),
    }
    Ok(())
}

fn meta_command(disks: Vec<PathBuf>, device: Option<PathBuf>, op: MetaOp) -> Result<ExitCode> {
    let (path, _open) = match device {
        Some(d) => (d, None),
        None => {
            let disks = if disks.is_empty() {
                controller::node::disks::system_disks()
            } else {
                disks
            };
            let parts = controller::node::disks::by_label(&disks)?;
            let p = parts
                .get("META")
                .context("no partition labelled META on the given disks")?;
            let open = controller::node::disks::OpenPartition::open(p)?;
            (open.path.clone(), Some(open))
        }
    };
    match op {
        MetaOp::List => {
            for (tag, v) in meta::read(&path)?.records {
                println!("{tag}\t{} bytes", v.len());
            }
        }
        MetaOp::Get { tag } => match meta::read(&path)?.records.get(&tag) {
            Some(v) => println!("{}", String::from_utf8_lossy(v)),
            None => bail!("META has no record with tag {tag}"),
        },
        MetaOp::Set { tag, value } => meta::update(&path, tag, Some(value.into_bytes()))?,
        MetaOp::Delete { tag } => meta::update(&path, tag, None)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Validates files; prints diagnostics (stderr for text, stdout for JSON).
fn validate(files: &[PathBuf], output: Output) -> ExitCode {
    let (parsed, _) = api_types::parse_files(files);
    let docs = parsed.documents.len();
    let all = parsed.diagnostics;
    let errors = all.iter().filter(|d| d.is_error()).count();
    match output {
        Output::Json => {
            let v =
                serde_json::json!({"valid": errors == 0, "documents": docs, "diagnostics": all});
            println!(
                "{}",
                serde_json::to_string_pretty(&v).expect("diagnostics serialise")
            );
        }
        Output::Text => {
            for d in &all {
                eprintln!("{d}");
            }
            if errors == 0 {
                println!("{docs} document(s) valid in {} file(s)", files.len());
            } else {
                eprintln!("{errors} error(s)");
            }
        }
    }
    if errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Loads every document of `files`; any error fails with all diagnostics.
/// Warnings about the document named `volume` are printed to stderr.
fn load_documents(files: &[PathBuf], volume: &str) -> Result<Vec<Document>> {
    let (p, _) = api_types::parse_files(files);
    let mut errors = Vec::new();
    for d in &p.diagnostics {
        if d.is_error() {
            errors.push(d.to_string());
        } else if d.document.as_ref().and_then(|r| r.name.as_deref()) == Some(volume) {
            eprintln!("{d}");
        }
    }
    if !errors.is_empty() {
        bail!("the config is invalid:\n{}", errors.join("\n"));
    }
    Ok(p.documents)
}

fn provider_env(target: &Target) -> Result<ProviderEnv> {
    let node_uuid = read_node_uuid(target.node_uuid.as_deref(), Path::new(SMBIOS_UUID_PATH))
        .map_err(|e| e.to_string());
    let state_salt = match &target.state_salt_file {
        Some(p) => Some(controller::node::salt::read_salt_file(p)?),
        None => None,
    };
    Ok(ProviderEnv {
        node_uuid,
        state_salt,
        kms: kms_options(&target.kms)?,
        tpm: tpm_options(&target.kms),
    })
}

/// Runs plan or converge; returns whether the plan was empty.
fn run_converge(target: &Target, mode: Mode) -> Result<bool> {
    let docs = load_documents(&target.files, &target.volume)?;
    let spec = VolumeSpec::from_documents(&docs, &target.volume)?;
    let env = provider_env(target)?;
    let device = controller::converge::open_device(&spec, &target.device, mode)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let outcome = rt
        .block_on(converge(&spec, device, &env, mode))
        .with_context(|| format!("volume {}", spec.name))?;
    match target.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&outcome)?),
        Output::Text => print!("{}", controller::render::outcome_text(&outcome)),
    }
    Ok(outcome.plan.is_empty())
}
