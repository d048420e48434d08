//! A repository in memory, for fast tests: the same contract as a folder
//! or a bucket (see [`super::Backend`]), checked by the same conformance
//! suite, nothing on disk.

use std::collections::BTreeMap;
use std::io::{Cursor, Read};
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use super::{copy_hashed, Backend, Batch, ObjectKey, ObjectMeta, Put, PutOptions, StoreError, Written};

/// One stored object.
#[derive(Debug, Clone)]
struct Object {
    data: Arc<Vec<u8>>,
    modified: SystemTime,
}

/// Objects by name. Clones share the same objects.
#[derive(Debug, Clone, Default)]
pub struct Memory {
    objects: Arc<Mutex<BTreeMap<String, Object>>>,
}

impl Memory {
    /// An empty repository.
    pub fn new() -> Memory {
        Memory::default()
    }

    fn objects(&self) -> MutexGuard<'_, BTreeMap<String, Object>> {
        // Plain data: a panic elsewhere leaves it usable.
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn read_all(key: &ObjectKey, data: &mut dyn Read) -> Result<(Vec<u8>, Written), StoreError> {
        let mut bytes = Vec::new();
        let written = copy_hashed(key, data, &mut bytes)?;
        Ok((bytes, written))
    }

    fn store(&self, key: &ObjectKey, bytes: Vec<u8>, create_only: bool) -> Result<(), StoreError> {
        let mut objects = self.objects();
        if create_only && objects.contains_key(key.as_str()) {
            return Err(StoreError::AlreadyExists(key.to_string()));
        }
        objects.insert(
            key.as_str().to_owned(),
            Object {
                data: Arc::new(bytes),
                modified: SystemTime::now(),
            },
        );
        Ok(())
    }

    fn object(&self, key: &ObjectKey) -> Result<Object, StoreError> {
        self.objects()
            .get(key.as_str())
            .cloned()
            .ok_or_else(|| StoreError::NotFound(key.to_string()))
    }
}

impl Backend for Memory {
    fn location(&self) -> String {
        "memory".into()
    }

    fn check_location(&self) -> Result<(), String> {
        Ok(())
    }

    fn put(&self, key: &ObjectKey, data: &mut dyn Read, options: PutOptions) -> Result<Written, StoreError> {
        let (bytes, written) = Self::read_all(key, data)?;
        self.store(key, bytes, options.create_only)?;
        Ok(written)
    }

    fn batch(&self) -> Box<dyn Batch + '_> {
        Box::new(MemoryBatch {
            store: self,
            pending: Vec::new(),
        })
    }

    fn get(&self, key: &ObjectKey) -> Result<Box<dyn Read + Send>, StoreError> {
        let object = self.object(key)?;
        Ok(Box::new(Cursor::new(SharedBytes(object.data))))
    }

    fn get_range(&self, key: &ObjectKey, range: Range<u64>) -> Result<Box<dyn Read + Send>, StoreError> {
        let object = self.object(key)?;
        let len = object.data.len() as u64;
        let (start, end) = (range.start.min(len) as usize, range.end.min(len) as usize);
        Ok(Box::new(Cursor::new(object.data[start..end.max(start)].to_vec())))
    }

    fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>, StoreError> {
        Ok(self.objects().get(key.as_str()).map(|o| ObjectMeta {
            key: key.clone(),
            size: o.data.len() as u64,
            modified: o.modified,
        }))
    }

    fn list(&self, prefix: &str, each: &mut dyn FnMut(ObjectMeta) -> anyhow::Result<()>) -> anyhow::Result<()> {
        let found: Vec<ObjectMeta> = self
            .objects()
            .range(prefix.to_owned()..)
            .take_while(|(name, _)| name.starts_with(prefix))
            .map(|(name, o)| {
                Ok(ObjectMeta {
                    key: ObjectKey::parse(name)?,
                    size: o.data.len() as u64,
                    modified: o.modified,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        found.into_iter().try_for_each(each)
    }

    fn list_children(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut names: Vec<String> = self
            .objects()
            .range(prefix.to_owned()..)
            .take_while(|(name, _)| name.starts_with(prefix))
            .filter_map(|(name, _)| name[prefix.len()..].split('/').next().map(str::to_owned))
            .collect();
        names.dedup();
        Ok(names)
    }

    fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        self.objects().remove(key.as_str());
        Ok(())
    }
}

/// Bytes shared with the store, readable through a cursor.
struct SharedBytes(Arc<Vec<u8>>);

impl AsRef<[u8]> for SharedBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Puts held back until the commit.
struct MemoryBatch<'a> {
    store: &'a Memory,
    pending: Vec<(ObjectKey, Vec<u8>, bool)>,
}

impl Batch for MemoryBatch<'_> {
    fn put_group(&mut self, puts: &mut [Put<'_>]) -> Result<Vec<Written>, StoreError> {
        let mut group = Vec::new();
        let mut written = Vec::new();
        for put in puts.iter_mut() {
            let (bytes, w) = Memory::read_all(put.key, put.data)?;
            group.push((put.key.clone(), bytes, put.options.create_only));
            written.push(w);
        }
        self.pending.extend(group);
        Ok(written)
    }

    fn pending(&self) -> usize {
        self.pending.len()
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        for (key, bytes, create_only) in std::mem::take(&mut self.pending) {
            self.store.store(&key, bytes, create_only)?;
        }
        Ok(())
    }
}
