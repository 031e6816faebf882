//! HTTPS: `deftech serve --tls-cert --tls-key` with a self-signed certificate made by the
//! `openssl` command line, queried with `curl`.

use std::process::Command;

use crate::shutdown::free_addr;

#[test]
fn serves_https_with_a_pem_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (Debian package openssl) is needed for this test");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let addr = free_addr();
    let mut child = Command::new(env!("CARGO_BIN_EXE_deftech"))
        .arg("serve")
        .arg("--data")
        .arg(dir.path().join("data"))
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .env("DEFTECH_LOG", "warn")
        .spawn()
        .unwrap();
    let url = format!("https://localhost:{}/readyz", addr.port());
    let mut ok = false;
    for _ in 0..300 {
        let out = Command::new("curl")
            .args(["-s", "-k", "-o", "/dev/null", "-w", "%{http_code}", &url])
            .output()
            .expect("curl");
        if String::from_utf8_lossy(&out.stdout) == "200" {
            ok = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Plain HTTP on the HTTPS port is refused.
    let plain = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("http://127.0.0.1:{}/readyz", addr.port()),
        ])
        .output()
        .unwrap();
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let exit = child.wait().unwrap();
    assert!(ok, "HTTPS never answered 200");
    assert_ne!(String::from_utf8_lossy(&plain.stdout), "200");
    assert!(exit.success());
}
