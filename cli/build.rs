//! Link `berth` as a position-dependent executable (`-no-pie`).
//!
//! Why: a PIE is relocated when it starts, which writes to ~400 KB of its
//! `.data.rel.ro` and turns those pages into private memory of every process.
//! berth runs one monitor process per container for the container's whole
//! life, so those pages would be paid once per container. Without PIE the
//! linker resolves them at build time and they stay shared, clean pages of
//! the file. (Address-space randomisation of the executable itself is lost;
//! libraries, stack and heap are still randomised.)
fn main() {
    println!("cargo:rustc-link-arg-bin=berth=-no-pie");
}
