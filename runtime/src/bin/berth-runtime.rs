fn main() {
    eprintln!("berth-runtime: not written yet");
    std::process::exit(1);
}
