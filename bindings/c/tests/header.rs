//! include/vst.h is what cbindgen makes of the crate now: fails when the
//! committed header is stale.

use std::path::Path;

#[test]
fn header_is_current() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let config = cbindgen::Config::from_file(Path::new(dir).join("cbindgen.toml"))
        .expect("cbindgen.toml is readable");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(dir)
        .with_config(config)
        .generate()
        .expect("cbindgen parses the crate")
        .write(&mut generated);
    let path = Path::new(dir).join("include/vst.h");
    let committed = std::fs::read(&path).unwrap_or_default();
    if committed == generated {
        return;
    }
    // Tests may read the environment: only the library crates may not.
    if std::env::var_os("VST_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("include/vst.h is writable");
        return;
    }
    panic!(
        "bindings/c/include/vst.h is stale: regenerate it with \
         `VST_BLESS=1 cargo test -p vst-c --test header` and commit it"
    );
}
