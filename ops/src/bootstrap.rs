//! First start of a data directory: check the root key against the database, and mint the
//! bootstrap admin token once.

use latchkey_vault::keyfmt::{self, KeyKind};
use latchkey_vault::model::{AdminToken, DEFAULT_TENANT};
use latchkey_vault::rootkey::{write_private_file, RootKey};
use latchkey_vault::store::Store;
use latchkey_vault::SecretString;
use std::path::Path;

const CHECK_META: &str = "root_key_check";
const BOOTSTRAP_META: &str = "bootstrap_admin_token";

/// Fails with a clear message when the root key is not the one this database was created with.
pub async fn check_root_key(store: &dyn Store, root: &RootKey) -> anyhow::Result<()> {
    let check = root.check_value();
    match store.get_meta(CHECK_META).await? {
        Some(stored) if stored == check => Ok(()),
        Some(_) => anyhow::bail!(
            "the root key does not match this database: it was created with a different \
             LATCHKEY_ROOT_KEY or root.key file. Restore the original root key; stored \
             credentials cannot be decrypted without it"
        ),
        None => {
            store.set_meta(CHECK_META, &check).await?;
            Ok(())
        }
    }
}

/// Creates an admin token, stores its hash and returns the token (shown once).
pub async fn create_admin_token(
    store: &dyn Store,
    root: &RootKey,
    name: &str,
) -> anyhow::Result<(AdminToken, SecretString)> {
    let token = keyfmt::generate(KeyKind::Admin);
    let rec = AdminToken {
        id: keyfmt::new_id("adm"),
        tenant: DEFAULT_TENANT.into(),
        name: name.into(),
        hash: keyfmt::hash_key(root, token.expose()),
        created_at: chrono::Utc::now(),
    };
    store.insert_admin_token(&rec).await?;
    Ok((rec, token))
}

/// On the first start of a store, mints the bootstrap admin token and writes it to
/// `token_file` (mode 0600). Returns the token when one was minted.
pub async fn bootstrap_admin(
    store: &dyn Store,
    root: &RootKey,
    token_file: &Path,
) -> anyhow::Result<Option<SecretString>> {
    if store.get_meta(BOOTSTRAP_META).await?.is_some() {
        return Ok(None);
    }
    let (rec, token) = create_admin_token(store, root, "bootstrap").await?;
    if token_file.exists() {
        std::fs::remove_file(token_file)?;
    }
    write_private_file(token_file, format!("{}\n", token.expose()).as_bytes())
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", token_file.display()))?;
    store.set_meta(BOOTSTRAP_META, &rec.id).await?;
    Ok(Some(token))
}
