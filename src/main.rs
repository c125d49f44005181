//! `load-balancer`: parse the flags, start the demo backends when asked, run the balancer.

use load_balancer::config::{self, BackendSpec, Command, Config};
use load_balancer::demo::DemoBackend;
use load_balancer::server::Balancer;
use std::net::SocketAddr;
use std::process::ExitCode;

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
        Ok(Command::Run(config)) => run(*config),
        Err(message) => {
            eprintln!("error: {message}\n\n{}", config::usage());
            ExitCode::from(2)
        }
    }
}

fn run(mut config: Config) -> ExitCode {
    // The chapter's demo: without --backend, Red and Blue on 8001 and 8002. --demo N starts N
    // of them, and with --backend too, the demo backends join the given ones.
    let demo_count = config.demo.unwrap_or(if config.backends.is_empty() {
        config::DEMO_DEFAULT_COUNT
    } else {
        0
    });
    let mut demos = Vec::new();
    for i in 0..demo_count {
        let addr = SocketAddr::from(([127, 0, 0, 1], config::DEMO_FIRST_PORT + i as u16));
        match DemoBackend::start(i, addr) {
            Ok(demo) => {
                println!("[Backend] {} Server started at {}", demo.name(), demo.url());
                config
                    .backends
                    .push(BackendSpec::parse(&demo.url()).expect("a demo URL parses"));
                demos.push(demo);
            }
            Err(e) => {
                eprintln!("error: demo backend: {e}");
                return ExitCode::from(1);
            }
        }
    }
    let strategy = config.strategy;
    let balancer = match Balancer::start(config) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    println!(
        "[LoadBalancer] Running at http://{} ({})",
        balancer.addr(),
        strategy.name()
    );
    loop {
        std::thread::park();
    }
}
