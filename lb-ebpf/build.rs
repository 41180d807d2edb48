//! Rebuild the object when bpf-linker changes (it does the final codegen) and ask it for the
//! BPF v3 ISA: 32-bit sub-registers, atomic fetch-and-add (the round-robin cursor), jmp32.
fn main() {
    if let Ok(linker) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
}
