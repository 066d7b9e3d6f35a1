//! The device fingerprint `latchkey keys bind-device` computes for this machine.
//!
//! `hex(SHA-256("latchkey-device-v1\0" + machine-id + "\0" + hostname + "\0" + OS user))`, where
//! machine-id is `/etc/machine-id` (else `/var/lib/dbus/machine-id`), hostname is
//! `/proc/sys/kernel/hostname` (else `/etc/hostname`, else `$HOSTNAME`) and the user is `$USER`
//! (else `$LOGNAME`). It is stable across reboots and differs between machines and between users
//! of one machine. It is not a hardware attestation: it binds a key to a machine the way a second
//! secret would, so keep it out of shared places. The server stores only a hash of it.

use anyhow::bail;
use sha2::{Digest, Sha256};

const MACHINE_ID_FILES: [&str; 2] = ["/etc/machine-id", "/var/lib/dbus/machine-id"];

fn first_file(paths: &[&str]) -> Option<String> {
    paths.iter().find_map(|p| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    })
}

fn env(names: &[&str]) -> String {
    names
        .iter()
        .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
        .unwrap_or_default()
}

/// The fingerprint from its three inputs.
pub fn fingerprint_from(machine_id: &str, hostname: &str, user: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"latchkey-device-v1\0");
    h.update(machine_id.trim().as_bytes());
    h.update(b"\0");
    h.update(hostname.trim().as_bytes());
    h.update(b"\0");
    h.update(user.trim().as_bytes());
    latchkey_vault::keyfmt::hex(&h.finalize())
}

/// This machine's fingerprint.
pub fn this_machine() -> anyhow::Result<String> {
    let Some(machine_id) = first_file(&MACHINE_ID_FILES) else {
        bail!(
            "cannot read a machine id from {} or {}; pass --fingerprint VALUE instead",
            MACHINE_ID_FILES[0],
            MACHINE_ID_FILES[1]
        );
    };
    let hostname = first_file(&["/proc/sys/kernel/hostname", "/etc/hostname"])
        .unwrap_or_else(|| env(&["HOSTNAME"]));
    let user = env(&["USER", "LOGNAME"]);
    Ok(fingerprint_from(&machine_id, &hostname, &user))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_and_sensitive_to_each_input() {
        let a = fingerprint_from("m1", "host", "alice");
        assert_eq!(a, fingerprint_from(" m1\n", "host", "alice"));
        assert_eq!(a.len(), 64);
        assert_ne!(a, fingerprint_from("m2", "host", "alice"));
        assert_ne!(a, fingerprint_from("m1", "host2", "alice"));
        assert_ne!(a, fingerprint_from("m1", "host", "bob"));
        // Separators keep fields apart.
        assert_ne!(
            fingerprint_from("ab", "c", ""),
            fingerprint_from("a", "bc", "")
        );
    }
}
