//! The `arenabuf` command: `arenabuf` (the main job), `arenabuf classes`,
//! `arenabuf demo`.

mod demo;
mod stats;

const USAGE: &str = "usage: arenabuf [classes | demo]";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None => {
            demo::print_size_classes();
            println!();
            demo::run();
        }
        Some("classes") => demo::print_size_classes(),
        Some("demo") => demo::run(),
        Some("stats") => stats::run(&args[1..]),
        Some("-h" | "--help" | "help") => println!("{USAGE}"),
        Some(other) => {
            eprintln!("arenabuf: unknown command {other:?}\n{USAGE}");
            std::process::exit(2);
        }
    }
}
