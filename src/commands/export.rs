//! `slipway export REL -o FILE`: copy a bundle out of the store, verifying
//! every byte on the way, with its provenance in `FILE.meta.json`.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::Context;
use crate::bundle::unpack::{VerifyOnly, read_bundle};
use crate::cli::ExportArgs;
use crate::error::{Error, Result};
use crate::fs;

/// The sidecar beside an exported bundle: `FILE.meta.json`.
pub fn sidecar_path(file: &Path) -> PathBuf {
    crate::import::sidecar_path(file)
}

/// A reader that copies everything it reads into `sink`.
pub struct Tee<R, W> {
    pub inner: R,
    pub sink: W,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sink.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// # Errors
/// When REL does not resolve, the bundle is damaged (exit 5), or FILE cannot be written.
pub fn run(args: &ExportArgs, ctx: &Context) -> Result<()> {
    let store = ctx.store()?;
    let (id, record) = store.resolve(&args.rel)?;
    let src = store.bundle_path(&id);
    // 0644 minus the umask, like any file a user writes: others may read an export.
    let mut tmp = fs::user_file_for(&args.output)?;
    {
        let mut tee = Tee {
            inner: fs::open(&src)?,
            sink: io::BufWriter::new(tmp.as_file_mut()),
        };
        let (_, got) = read_bundle(&mut tee, &src.display().to_string(), &mut VerifyOnly)?;
        if got != id {
            return Err(Error::integrity(format!(
                "bundle `{}` holds {got}, not {id}",
                src.display()
            )));
        }
        io::copy(&mut tee, &mut io::sink()).map_err(|e| Error::io("read", &src, e))?;
        tee.sink.flush().map_err(|e| Error::io("write", &args.output, e))?;
    }
    tmp.as_file()
        .sync_all()
        .map_err(|e| Error::io("fsync", &args.output, e))?;
    tmp.persist(&args.output)
        .map_err(|e| Error::io("write", &args.output, e.error))?;
    let sidecar = sidecar_path(&args.output);
    let meta = match &record {
        Some(r) => serde_json::to_vec_pretty(r),
        None => serde_json::to_vec_pretty(&serde_json::json!({"id": id})),
    }
    .map_err(Error::Encode)?;
    fs::write_user_file(&sidecar, &meta)?;
    if ctx.out.json {
        ctx.out.json_value(&serde_json::json!({
            "release": record.as_ref().map(|r| r.name.clone()),
            "id": id,
            "file": args.output,
            "sidecar": sidecar,
        }));
    } else {
        ctx.out
            .info(&format!("wrote {} and {}", args.output.display(), sidecar.display()));
        ctx.out.data(&id.to_string());
    }
    Ok(())
}
