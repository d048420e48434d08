//! Reading the main file and its drop-ins, and merging them.
//!
//! Drop-ins are `hwdr.d/*.toml` next to the main file, applied in lexical
//! order. Tables merge key by key; any other value, arrays such as
//! `[[nodes]]` included, replaces the earlier one whole. Each file is checked
//! on its own first, so an unknown key or a wrong type names its file.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use toml::{Table, Value};

use super::raw::RawConfig;

/// Which file set each key, for error messages.
#[derive(Debug, Clone, Default)]
pub struct Origins {
    main: String,
    by_key: HashMap<String, String>,
}

impl Origins {
    /// The file (as shown to people) that set `path` (`rondb.user`), or the
    /// main file when the key was left at its default.
    pub fn file_of(&self, path: &str) -> &str {
        let mut key = path;
        loop {
            if let Some(file) = self.by_key.get(key) {
                return file;
            }
            match key.rfind('.') {
                Some(dot) => key = &key[..dot],
                None => return &self.main,
            }
        }
    }

    /// `file: [section] key` for a key of a table section.
    pub fn key(&self, section: &str, key: &str) -> String {
        format!("{}: [{section}] {key}", self.file_of(&format!("{section}.{key}")))
    }
}

/// The merged TOML of every file, and where each key came from.
pub struct Loaded {
    pub raw: RawConfig,
    pub origins: Origins,
    pub files: Vec<PathBuf>,
}

/// Reads `main` and its drop-ins. Errors name the file.
pub fn load(main: &Path) -> Result<Loaded, Vec<String>> {
    let base = main.parent().unwrap_or(Path::new("/"));
    let shown = |p: &Path| -> String { p.strip_prefix(base).unwrap_or(p).display().to_string() };
    let mut files = vec![main.to_path_buf()];
    let dropin_dir = base.join("hwdr.d");
    match fs::read_dir(&dropin_dir) {
        Ok(entries) => {
            let mut dropins: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
                .collect();
            dropins.sort();
            files.extend(dropins);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(vec![format!("{}: cannot list drop-ins: {e}", shown(&dropin_dir))]),
    }

    let mut merged = Table::new();
    let mut origins = Origins {
        main: shown(main),
        by_key: HashMap::new(),
    };
    let mut errors = Vec::new();
    for file in &files {
        let name = shown(file);
        let text = match fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) => {
                errors.push(format!("{name}: cannot read: {e}"));
                continue;
            }
        };
        // Checked alone first: unknown keys and wrong types name this file.
        if let Err(e) = toml::from_str::<RawConfig>(&text) {
            errors.push(format!("{name}: {}", e.to_string().trim_end()));
            continue;
        }
        match text.parse::<Table>() {
            Ok(table) => merge(&mut merged, table, &name, "", &mut origins.by_key),
            Err(e) => errors.push(format!("{name}: {}", e.to_string().trim_end())),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let raw = Value::Table(merged)
        .try_into::<RawConfig>()
        .map_err(|e| vec![format!("{}: {e}", origins.main)])?;
    Ok(Loaded { raw, origins, files })
}

fn merge(into: &mut Table, from: Table, file: &str, prefix: &str, origins: &mut HashMap<String, String>) {
    for (key, value) in from {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match (into.get_mut(&key), value) {
            (Some(Value::Table(existing)), Value::Table(table)) => {
                origins.entry(path.clone()).or_insert_with(|| file.to_owned());
                merge(existing, table, file, &path, origins);
            }
            (_, value) => {
                record(&value, file, &path, origins);
                into.insert(key, value);
            }
        }
    }
}

fn record(value: &Value, file: &str, path: &str, origins: &mut HashMap<String, String>) {
    origins.retain(|k, _| !(k == path || k.starts_with(&format!("{path}."))));
    origins.insert(path.to_owned(), file.to_owned());
    if let Value::Table(table) = value {
        for (key, inner) in table {
            record(inner, file, &format!("{path}.{key}"), origins);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn dropins_merge_in_lexical_order_and_remember_their_file() {
        let dir = tempfile::tempdir().unwrap();
        let main = write(dir.path(), "hwdr.toml", "[rondb]\nuser = \"a\"\nsocket = \"/s\"\n");
        write(dir.path(), "hwdr.d/20-b.toml", "[rondb]\nuser = \"c\"\n");
        write(dir.path(), "hwdr.d/10-a.toml", "[rondb]\nuser = \"b\"\n");
        write(dir.path(), "hwdr.d/ignored.conf", "garbage");
        let loaded = load(&main).unwrap();
        let rondb = loaded.raw.rondb.unwrap();
        assert_eq!(rondb.user.as_deref(), Some("c"));
        assert_eq!(rondb.socket.as_deref(), Some("/s"));
        assert_eq!(loaded.origins.key("rondb", "user"), "hwdr.d/20-b.toml: [rondb] user");
        assert_eq!(loaded.origins.key("rondb", "socket"), "hwdr.toml: [rondb] socket");
        assert_eq!(loaded.origins.key("rondb", "mysql"), "hwdr.toml: [rondb] mysql");
        assert_eq!(loaded.origins.key("agent", "listen"), "hwdr.toml: [agent] listen");
    }

    #[test]
    fn unknown_key_names_the_file_and_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let main = write(dir.path(), "hwdr.toml", "[cluster]\nname = \"x\"\n");
        write(dir.path(), "hwdr.d/20-rondb.toml", "[rondb]\nusr = \"mysql\"\n");
        let errors = load(&main).err().unwrap();
        assert_eq!(errors.len(), 1);
        assert!(errors[0].starts_with("hwdr.d/20-rondb.toml: "), "{}", errors[0]);
        assert!(errors[0].contains("unknown field `usr`"), "{}", errors[0]);
    }

    #[test]
    fn arrays_replace_instead_of_appending() {
        let dir = tempfile::tempdir().unwrap();
        let main = write(
            dir.path(),
            "hwdr.toml",
            "[[nodes]]\nname = \"a\"\n[[nodes]]\nname = \"b\"\n",
        );
        write(dir.path(), "hwdr.d/1.toml", "[[nodes]]\nname = \"c\"\n");
        let loaded = load(&main).unwrap();
        let names: Vec<_> = loaded.raw.nodes.unwrap().into_iter().map(|n| n.name.unwrap()).collect();
        assert_eq!(names, ["c"]);
    }
}
