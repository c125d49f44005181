//! `load-balancer`: the chapter's "Running" (`python load_balancer.py`). Parse the flags,
//! start the demo backends when asked (the chapter's Red and Blue servers), run the balancer
//! until Ctrl-C or `SIGTERM`, then drain.

use load_balancer::admin::Drills;
use load_balancer::backends;
use load_balancer::config::{self, BackendSpec, Command, Config};
use load_balancer::console;
use load_balancer::demo::Fleet;
use load_balancer::server::Balancer;
use load_balancer::signal;
use std::io::{BufRead, IsTerminal, Write};
use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

fn main() -> ExitCode {
    match config::parse_args(std::env::args().skip(1)) {
        Ok(Command::Help) => {
            print!("{}", config::usage());
            ExitCode::SUCCESS
        }
        Ok(Command::Version) => {
            println!("load-balancer {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Ok(Command::Run(mut config)) => match read_backends_file(&mut config) {
            Ok(()) if config.check => {
                print!("{}", config::file::report(&config));
                println!("configuration OK");
                ExitCode::SUCCESS
            }
            Ok(()) if token_on_command_line() => {
                eprintln!(
                    "warning: --admin-token shows the token to every user of this machine \
                     (ps, /proc/PID/cmdline): put it in a file of mode 0600 and pass \
                     --admin-token-file PATH"
                );
                run(*config)
            }
            Ok(()) => run(*config),
            Err(message) => {
                eprintln!("error: {message}");
                ExitCode::from(2)
            }
        },
        Err(message) => {
            // Not eprintln!: a closed stderr (`| head -1`) must not turn exit 2 into a panic.
            let _ = writeln!(std::io::stderr(), "error: {message}\n\n{}", config::usage());
            ExitCode::from(2)
        }
    }
}

/// Was the admin token given as a value on the command line (which `ps` shows)?
fn token_on_command_line() -> bool {
    std::env::args().any(|a| a == "--admin-token" || a.starts_with("--admin-token="))
}

/// With `--backends-file`, its list is the backend list at start. A bad file is a bad flag
/// value: `main` exits with status 2 and the message names the file and the line.
fn read_backends_file(config: &mut Config) -> Result<(), String> {
    if let Some(path) = &config.backends_file {
        // The admin address only when given by hand: the default one is skipped when taken.
        let admin = config.admin.filter(|_| config.admin_required);
        let own: Vec<_> = [Some(config.listen), admin].into_iter().flatten().collect();
        config.backends =
            backends::file::load(path, &own).map_err(|e| format!("--backends-file {e}"))?;
        config::weights_are_used(config.strategy, &config.backends)?;
        if config.check {
            return Ok(());
        }
        println!(
            "[Backends] {} backends from {} (re-read when it changes, or on SIGHUP)",
            config.backends.len(),
            path.display()
        );
    }
    Ok(())
}

/// Says whose forwarding fields and PROXY headers the balancer believes, if anyone's.
fn print_trust(config: &Config) {
    let ranges: Vec<String> = config
        .trusted_proxies
        .iter()
        .map(|r| r.to_string())
        .collect();
    if !ranges.is_empty() {
        println!(
            "[LoadBalancer] Trusting X-Forwarded-* and Forwarded from {}",
            ranges.join(", ")
        );
    }
    if config.proxy_protocol {
        let from = if ranges.is_empty() {
            "any peer"
        } else {
            "those peers only"
        };
        println!("[LoadBalancer] Every connection must open with a PROXY header ({from})");
    }
}

fn run(mut config: Config) -> ExitCode {
    // Before anything starts, so that a SIGHUP sent as soon as the ports answer never meets
    // the default action (which ends the process).
    if let Err(e) = signal::install() {
        eprintln!("warning: cannot handle Ctrl-C gracefully: {e}");
    }
    let fleet = match start_demos(&mut config) {
        Ok(fleet) => fleet,
        Err(e) => {
            eprintln!("error: demo backend: {e}");
            return ExitCode::from(1);
        }
    };
    let strategy = config.strategy;
    print_trust(&config);
    let started = if fleet.backends.is_empty() {
        Balancer::start(config)
    } else {
        Balancer::start_with_drills(config, Arc::clone(&fleet) as Arc<dyn Drills>)
    };
    let balancer = match started {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    // From here on the console is written through `console`: a stdout or stderr that
    // nobody reads must not stop the main thread from noticing signals.
    console::notice(format_args!(
        "[LoadBalancer] Running at http://{} ({})",
        balancer.addr(),
        strategy.name()
    ));
    if let Some(admin) = balancer.admin_addr() {
        console::notice(format_args!("[Admin] Status page at http://{admin}/status"));
    }
    if let Some(path) = balancer.admin_socket() {
        console::notice(format_args!(
            "[Admin] On the socket {} (mode 0600): curl --unix-socket {} http://lb/status.json",
            path.display(),
            path.display()
        ));
    }
    if !fleet.backends.is_empty() && std::io::stdin().is_terminal() {
        start_console(Arc::clone(&fleet));
    }
    let code = wait_and_drain(balancer);
    console::flush(EXIT_FLUSH);
    code
}

/// How long the last console lines may take to be written at exit.
const EXIT_FLUSH: Duration = Duration::from_secs(1);

/// The chapter's demo: without --backend, Red and Blue on 8001 and 8002. --demo N starts N
/// of them, and with --backend too, the demo backends join the given ones. With
/// --backends-file, they only run: the file says which backends are balanced.
fn start_demos(config: &mut Config) -> std::io::Result<Arc<Fleet>> {
    let from_file = config.backends_file.is_some();
    let default = if config.backends.is_empty() && !from_file {
        config::DEMO_DEFAULT_COUNT
    } else {
        0
    };
    let count = config.demo.unwrap_or(default);
    let fleet = Fleet::start(count, Ipv4Addr::LOCALHOST.into(), config.demo_port)?;
    for demo in &fleet.backends {
        println!("[Backend] {} Server started at {}", demo.name(), demo.url());
        if !from_file {
            let spec = BackendSpec::parse(&demo.url()).expect("a demo URL parses");
            config.backends.push(spec.clone());
            config.demo_backends.push(spec);
        }
    }
    Ok(Arc::new(fleet))
}

/// How often the main thread looks at the signal counter. A signal is noticed within this
/// time; the cost is a wake-up ten times a second of an otherwise idle thread.
const SIGNAL_POLL: Duration = Duration::from_millis(100);

/// Waits for SIGINT or SIGTERM, then drains: the balancer stops accepting, requests in flight
/// finish (up to --drain-timeout), idle connections close, a summary is printed, exit 0.
/// A second signal during the drain exits at once with 128 + the signal's number. Each
/// SIGHUP on the way reads --config and --backends-file again.
fn wait_and_drain(balancer: Balancer) -> ExitCode {
    let mut hangups = 0;
    while signal::received() == 0 {
        thread::park_timeout(SIGNAL_POLL);
        if signal::hangups() != hangups {
            hangups = signal::hangups();
            console::notice(format_args!(
                "[LoadBalancer] SIGHUP: reading the configuration again"
            ));
            // One line says what changed, or why nothing did (see `reload`).
            let _ = balancer.reload("SIGHUP");
        }
    }
    let first = signal::last().unwrap_or(signal::SIGTERM);
    console::notice(format_args!(
        "[LoadBalancer] {}: draining (up to {:?}; send it again to stop now)",
        signal::name(first),
        balancer.shared().live().config.drain_timeout
    ));
    let drain = match thread::Builder::new()
        .name("drain".into())
        .spawn(move || balancer.shutdown())
    {
        Ok(handle) => handle,
        Err(e) => {
            console::error(format_args!("error: cannot start the drain: {e}"));
            return ExitCode::from(1);
        }
    };
    while !drain.is_finished() {
        if signal::received() >= 2 {
            let again = signal::last().unwrap_or(first);
            console::error(format_args!(
                "[LoadBalancer] {} again: stopping now",
                signal::name(again)
            ));
            console::flush(EXIT_FLUSH);
            std::process::exit(128 + again);
        }
        thread::park_timeout(SIGNAL_POLL / 10);
    }
    let Ok(summary) = drain.join() else {
        return ExitCode::from(1);
    };
    console::notice(format_args!(
        "[LoadBalancer] Stopped: {} requests on {} connections; drain took {:.3}s{}",
        summary.requests,
        summary.accepted,
        summary.drain.as_secs_f64(),
        match summary.abandoned {
            0 => String::new(),
            n => format!(", {n} connections cut at --drain-timeout"),
        }
    ));
    ExitCode::SUCCESS
}

/// Reads drill commands typed on the terminal (`stop red`, `start red`, `slow blue 500`, ...),
/// for a reader who has no browser open on the status page.
fn start_console(fleet: Arc<Fleet>) {
    console::notice(format_args!(
        "[Console] Type a drill: stop red | start red | hang red | slow red 500 | error red 500 | ok red"
    ));
    let spawned = std::thread::Builder::new()
        .name("console".into())
        .spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { return };
                if line.trim().is_empty() {
                    continue;
                }
                match fleet.command(&line) {
                    Ok(done) => console::notice(format_args!("{done}")),
                    Err(e) => console::error(format_args!("[Console] {e}")),
                }
            }
        });
    if let Err(e) = spawned {
        eprintln!("[Console] cannot read commands: {e}");
    }
}
