//! Which glibc symbol versions a Linux binary needs, read from its ELF version tables.
//!
//! A binary linked against a newer glibc than the machine running it has fails at start-up
//! with `version 'GLIBC_2.xx' not found`: the dynamic loader compares the versions named in
//! `.gnu.version_r` (what each undefined symbol was linked against, through `.gnu.version`)
//! with its own. Reading those tables tells, before anything is uploaded, whether Lambda's
//! runtime could start the binary. Layouts: the System V gABI (ELF header, section headers,
//! symbol table) and the Linux Standard Base's "Symbol Versioning" (verneed, versym).

use std::collections::BTreeMap;

/// A glibc version, e.g. `(2, 34)`.
pub type Version = (u32, u32);

const SHT_DYNSYM: u32 = 11;
const SHT_GNU_VERNEED: u32 = 0x6fff_fffe;
const SHT_GNU_VERSYM: u32 = 0x6fff_ffff;

struct Section {
    kind: u32,
    offset: usize,
    size: usize,
    link: usize,
    info: usize,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<usize> {
    usize::try_from(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?)).ok()
}
fn str_at(b: &[u8], at: usize) -> Option<&str> {
    let rest = b.get(at..)?;
    let end = rest.iter().position(|&c| c == 0)?;
    std::str::from_utf8(&rest[..end]).ok()
}

/// `GLIBC_2.36` → `(2, 36)`; other version names (e.g. `GLIBC_PRIVATE`) → `None`.
fn parse_version(name: &str) -> Option<Version> {
    let mut parts = name.strip_prefix("GLIBC_")?.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().map_or(Some(0), |m| m.parse().ok())?;
    Some((major, minor))
}

/// Each glibc version the binary needs, with the dynamic symbols that need it. `Err` when the
/// file is not a 64-bit little-endian ELF file (the only kind Lambda runs), or is malformed.
pub fn needs(elf: &[u8]) -> Result<BTreeMap<Version, Vec<String>>, String> {
    if elf.get(..4) != Some(b"\x7fELF") || elf.get(4) != Some(&2) || elf.get(5) != Some(&1) {
        return Err("not a 64-bit little-endian ELF file".into());
    }
    read(elf).ok_or_else(|| "malformed ELF version tables".to_string())
}

fn read(elf: &[u8]) -> Option<BTreeMap<Version, Vec<String>>> {
    let shoff = u64_at(elf, 0x28)?;
    let shentsize = usize::from(u16_at(elf, 0x3a)?);
    let shnum = usize::from(u16_at(elf, 0x3c)?);
    let sections: Vec<Section> = (0..shnum)
        .map(|i| {
            let at = shoff + i * shentsize;
            Some(Section {
                kind: u32_at(elf, at + 4)?,
                offset: u64_at(elf, at + 0x18)?,
                size: u64_at(elf, at + 0x20)?,
                link: u32_at(elf, at + 0x28)? as usize,
                info: u32_at(elf, at + 0x2c)? as usize,
            })
        })
        .collect::<Option<_>>()?;
    let find = |kind| sections.iter().find(|s| s.kind == kind);
    let mut out: BTreeMap<Version, Vec<String>> = BTreeMap::new();
    // A static binary (or one without versioned symbols) needs nothing.
    let Some(verneed) = find(SHT_GNU_VERNEED) else {
        return Some(out);
    };

    // Version index → glibc version, from each needed file's auxiliary entries.
    let strings = sections.get(verneed.link)?.offset;
    let mut by_index: BTreeMap<u16, Version> = BTreeMap::new();
    let mut entry = verneed.offset;
    for _ in 0..verneed.info {
        let file = str_at(elf, strings + u32_at(elf, entry + 4)? as usize)?;
        let count = u16_at(elf, entry + 2)?;
        let mut aux = entry + u32_at(elf, entry + 8)? as usize;
        for _ in 0..count {
            let index = u16_at(elf, aux + 6)? & 0x7fff;
            let name = str_at(elf, strings + u32_at(elf, aux + 8)? as usize)?;
            if (file.starts_with("libc.so")
                || file.starts_with("libm.so")
                || file.starts_with("libpthread.so")
                || file.starts_with("libdl.so")
                || file.starts_with("librt.so")
                || file.starts_with("libutil.so")
                || file.starts_with("ld-linux"))
                && let Some(v) = parse_version(name)
            {
                by_index.insert(index, v);
            }
            aux += u32_at(elf, aux + 12)? as usize;
        }
        let next = u32_at(elf, entry + 12)? as usize;
        if next == 0 {
            break;
        }
        entry += next;
    }

    // Each undefined dynamic symbol, by the version its versym entry points at.
    if let (Some(dynsym), Some(versym)) = (find(SHT_DYNSYM), find(SHT_GNU_VERSYM)) {
        let names = sections.get(dynsym.link)?.offset;
        for i in 0..dynsym.size / 24 {
            let sym = dynsym.offset + i * 24;
            let defined = u16_at(elf, sym + 6)? != 0;
            let index = u16_at(elf, versym.offset + i * 2)? & 0x7fff;
            if let (false, Some(v)) = (defined, by_index.get(&index)) {
                let name = str_at(elf, names + u32_at(elf, sym)? as usize)?;
                out.entry(*v).or_default().push(name.to_string());
            }
        }
    }
    // A version named but used by no symbol still has to be present at load time.
    for v in by_index.values() {
        out.entry(*v).or_default();
    }
    Some(out)
}

/// What `needs` found above `limit`: the versions and their symbols.
pub fn newer_than(
    needs: &BTreeMap<Version, Vec<String>>,
    limit: Version,
) -> Vec<(Version, Vec<String>)> {
    needs
        .iter()
        .filter(|(v, _)| **v > limit)
        .map(|(v, s)| (*v, s.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_names() {
        assert_eq!(parse_version("GLIBC_2.34"), Some((2, 34)));
        assert_eq!(parse_version("GLIBC_2.2.5"), Some((2, 2)));
        assert_eq!(parse_version("GLIBC_2.3"), Some((2, 3)));
        assert_eq!(parse_version("GLIBC_PRIVATE"), None);
        assert!((2, 36) > (2, 34) && (2, 4) < (2, 34));
    }

    /// This test binary is a glibc binary: it needs some glibc, and `memcpy`/`malloc` among its
    /// symbols; a non-ELF input is refused.
    #[test]
    fn reads_the_versions_of_a_real_binary() {
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let found = needs(&exe).unwrap();
        assert!(!found.is_empty(), "{found:?}");
        assert!(found.keys().all(|(major, _)| *major == 2), "{found:?}");
        let symbols: Vec<&String> = found.values().flatten().collect();
        assert!(
            symbols.iter().any(|s| *s == "malloc" || *s == "memcpy"),
            "{symbols:?}"
        );
        assert!(needs(b"#!/bin/sh\n").is_err());
    }
}
