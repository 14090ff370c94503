//! What a function ships as: its binary's size, whether it is stripped, and the size
//! of the zip Lambda is given (the binary as `bootstrap`, deflated as `cargo lambda build
//! --output-format zip` and `sam build` do).

use std::path::Path;
use std::process::Command;

use serde_json::json;

use crate::{Args, Error};

/// `size --name N --bin PATH --build "cargo build --release"`: one JSON line.
pub fn run(args: &Args) -> Result<(), Error> {
    let bin = Path::new(args.req("bin")?);
    let bytes = std::fs::read(bin)?;
    let symtab = has_symtab(&bytes).ok_or_else(|| format!("{}: not a 64-bit ELF file", bin.display()))?;
    let dir = std::env::temp_dir().join(format!("pinpipe-size-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("bootstrap"), &bytes)?;
    let zip = dir.join("bootstrap.zip");
    let zipped = zip_file(&dir, &zip);
    let zip_bytes = std::fs::metadata(&zip).map(|m| m.len()).ok();
    let _ = std::fs::remove_dir_all(&dir);
    zipped?;
    println!(
        "{}",
        json!({"kind": "size", "name": args.get("name").unwrap_or(""), "build": args.get("build").unwrap_or(""),
            "binary_bytes": bytes.len(), "stripped": !symtab, "zip_bytes": zip_bytes})
    );
    Ok(())
}

/// Zips `dir/bootstrap` into `zip` with the `zip` command, or Python's zipfile without one.
fn zip_file(dir: &Path, zip: &Path) -> Result<(), Error> {
    let status = match Command::new("zip").arg("-q").arg("-j").arg(zip).arg(dir.join("bootstrap")).status() {
        Ok(status) => status,
        Err(_) => Command::new("python3")
            .args(["-c", "import sys, zipfile; zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED).write(sys.argv[2], 'bootstrap')"])
            .arg(zip)
            .arg(dir.join("bootstrap"))
            .status()?,
    };
    if status.success() { Ok(()) } else { Err(format!("zipping {} failed: {status}", zip.display()).into()) }
}

/// Whether a 64-bit little-endian ELF file has a `.symtab` section (symbols not stripped).
fn has_symtab(elf: &[u8]) -> Option<bool> {
    if elf.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let u16_at = |at: usize| elf.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]]) as usize);
    let u64_at = |at: usize| elf.get(at..at + 8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize);
    let (shoff, shentsize, shnum, shstrndx) = (u64_at(0x28)?, u16_at(0x3a)?, u16_at(0x3c)?, u16_at(0x3e)?);
    let section = |i: usize| shoff + i * shentsize;
    // Section header: sh_name at 0, sh_type at 4, sh_offset at 0x18.
    let names = u64_at(section(shstrndx) + 0x18)?;
    (0..shnum).try_fold(false, |found, i| {
        let name_at = names
            + elf.get(section(i)..section(i) + 4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))? as usize;
        let name = elf.get(name_at..)?.split(|&b| b == 0).next()?;
        Some(found || name == b".symtab")
    })
}
