//! Build-time only: give the shared library its soname (ABI policy in the README).
fn main() {
    let major = env!("CARGO_PKG_VERSION_MAJOR");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libpool.so.{major}");
    println!("cargo:rerun-if-changed=build.rs");
}
