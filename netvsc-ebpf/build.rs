//! The kernel object also depends on `bpf-linker`, which cargo does not know about: rebuild when
//! the one on PATH changes (a new bpf-linker can change the object without any source change).

fn main() {
    if let Ok(linker) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
}
