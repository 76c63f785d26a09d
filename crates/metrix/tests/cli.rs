//! The binary's contract with operators: a bad configuration exits 64 and
//! names the variable.

#![allow(clippy::expect_used, clippy::unwrap_used, reason = "a test fails by panicking")]

use std::process::Command;

#[test]
fn a_bad_master_key_exits_64_naming_the_variable() {
    let output = Command::new(env!("CARGO_BIN_EXE_metrix"))
        .arg("auth")
        .env("METRIX_DATABASE_URL", "sqlite://unused.db")
        .env("METRIX_AUTH__MASTER_KEY", "dG9vIHNob3J0")
        .output()
        .expect("the binary runs");
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("METRIX_AUTH__MASTER_KEY"), "{stderr}");
}

#[test]
fn an_unknown_database_scheme_exits_64() {
    let output = Command::new(env!("CARGO_BIN_EXE_metrix"))
        .arg("migrate")
        .env("METRIX_DATABASE_URL", "mysql://localhost/metrix")
        .output()
        .expect("the binary runs");
    assert_eq!(output.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&output.stderr).contains("METRIX_DATABASE_URL"));
}
