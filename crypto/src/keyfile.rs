//! Key files: JSON `{"public_key": "<hex>", "secret_key": "<hex>"}`, created with mode 0600.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{decode_hex_array, CryptoError, SigningKey};

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFileJson {
    public_key: String,
    secret_key: String,
}

/// Writes `key` to a new file at `path` with mode 0600. Refuses to overwrite an existing file, so
/// a key is never lost by accident.
pub fn write_key_file(path: &Path, key: &SigningKey) -> Result<(), CryptoError> {
    let err = |detail: String| CryptoError::KeyFile { path: path.display().to_string(), detail };
    let json = KeyFileJson {
        public_key: key.public_key().to_hex(),
        secret_key: hex::encode(key.secret_bytes()),
    };
    let text = serde_json::to_string_pretty(&json).map_err(|e| err(e.to_string()))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            err("already exists; choose another path or delete the old key deliberately".into())
        } else {
            err(format!("cannot create: {e}"))
        }
    })?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all())
        .map_err(|e| err(format!("cannot write: {e}")))
}

/// Largest key file read, in bytes; a key file written here is about 180 bytes.
pub const MAX_KEY_FILE_BYTES: usize = 4096;

/// Reads a key file (at most [`MAX_KEY_FILE_BYTES`]) and checks that its public key matches its
/// secret key.
pub fn read_key_file(path: &Path) -> Result<SigningKey, CryptoError> {
    let err = |detail: String| CryptoError::KeyFile { path: path.display().to_string(), detail };
    let file = std::fs::File::open(path).map_err(|e| err(format!("cannot read: {e}")))?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(file, MAX_KEY_FILE_BYTES as u64 + 1),
        &mut bytes,
    )
    .map_err(|e| err(format!("cannot read: {e}")))?;
    if bytes.len() > MAX_KEY_FILE_BYTES {
        return Err(err(format!(
            "larger than {MAX_KEY_FILE_BYTES} bytes (MAX_KEY_FILE_BYTES); this is not a key file"
        )));
    }
    let text =
        String::from_utf8(bytes).map_err(|_| err("not UTF-8; this is not a key file".into()))?;
    let json: KeyFileJson = serde_json::from_str(&text).map_err(|e| {
        err(format!("not a key file ({e}); expected {{\"public_key\": hex, \"secret_key\": hex}}"))
    })?;
    let secret =
        decode_hex_array::<32>("secret key", &json.secret_key).map_err(|e| err(e.to_string()))?;
    let key = SigningKey::from_secret(secret);
    if key.public_key().to_hex() != json.public_key.to_ascii_lowercase() {
        return Err(err("public_key does not match secret_key; the file is damaged".into()));
    }
    Ok(key)
}

/// A warning if the key file at `path` can be read by its group or by everyone (a secret key is
/// for its owner alone); `None` if the mode is private or cannot be known (non-Unix systems, or
/// the file cannot be inspected, which reading it will report).
pub fn permission_warning(path: &Path) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
        if mode & 0o044 != 0 {
            return Some(format!(
                "key file {} holds a secret key but is readable by {} (mode {mode:04o}); run `chmod 600 {}`",
                path.display(),
                if mode & 0o004 != 0 { "everyone" } else { "its group" },
                path.display()
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    None
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_private_mode_and_no_overwrite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.json");
        let key = SigningKey::from_seed_label("file");
        write_key_file(&path, &key).expect("write");
        let back = read_key_file(&path).expect("read");
        assert_eq!(back.public_key(), key.public_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(write_key_file(&path, &key).is_err());
        assert_eq!(permission_warning(&path), None, "a key written here is private");
    }

    #[cfg(unix)]
    #[test]
    fn a_key_readable_by_others_is_warned_about_and_an_oversized_file_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.json");
        write_key_file(&path, &SigningKey::from_seed_label("w")).expect("write");
        for (mode, who) in [(0o644, "everyone"), (0o640, "its group")] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            let warning = permission_warning(&path).unwrap_or_default();
            assert!(warning.contains(who) && warning.contains("chmod 600"), "{warning}");
        }
        let big = dir.path().join("big.json");
        std::fs::write(&big, vec![b' '; MAX_KEY_FILE_BYTES + 1]).expect("write");
        let e = read_key_file(&big).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("MAX_KEY_FILE_BYTES"), "{e}");
    }

    #[test]
    fn mismatched_public_key_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.json");
        let a = SigningKey::from_seed_label("a");
        let b = SigningKey::from_seed_label("b");
        let text = format!(
            "{{\"public_key\":\"{}\",\"secret_key\":\"{}\"}}",
            b.public_key().to_hex(),
            hex::encode(a.secret_bytes())
        );
        std::fs::write(&path, text).expect("write");
        let e = read_key_file(&path).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("does not match"), "{e}");
    }
}
