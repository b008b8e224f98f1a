//! C-STORE SCU: one association reused for many instances, each sent in its
//! own transfer syntax when accepted, else converted losslessly, else
//! reported as needing another syntax. Only a response counts: an instance
//! whose data set went out but got no answer is not delivered.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use dicom_object::meta::FileMetaTable;

use super::association::Assoc;
use super::command::{self, Command};
use super::error::ScuError;
use super::status::StoreStatus;
use super::transcode;
use super::{EXPLICIT_VR_LE, IMPLICIT_VR_LE, Proposal, ScuOptions};
use crate::coerce::Coercions;

/// What identifies an instance file, from its File Meta Information.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceMeta {
    pub sop_class: String,
    pub sop_instance: String,
    pub transfer_syntax: String,
    /// Where the data set starts in the file (after the meta group).
    pub data_set_at: u64,
}

impl InstanceMeta {
    /// Reads the File Meta Information of a PS3.10 file (preamble, `DICM`,
    /// group 0002), not the data set.
    pub fn read(path: &Path) -> Result<InstanceMeta, ScuError> {
        open_instance(path).map(|(meta, _)| meta)
    }
}

/// Opens a PS3.10 file and leaves the reader just after its meta group,
/// where the data set starts.
fn open_instance(path: &Path) -> Result<(InstanceMeta, BufReader<File>), ScuError> {
    let file_err = |detail: String| ScuError::File {
        path: path.to_path_buf(),
        doing: "read",
        detail,
    };
    let file = File::open(path).map_err(|e| file_err(e.to_string()))?;
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    let mut preamble = [0u8; 128];
    reader
        .read_exact(&mut preamble)
        .map_err(|_| file_err("it is too short to be a DICOM file".into()))?;
    let meta = FileMetaTable::from_reader(&mut reader).map_err(|e| {
        file_err(format!(
            "it is not a DICOM file with a valid File Meta Information ({e})"
        ))
    })?;
    let data_set_at = reader.stream_position().map_err(|e| file_err(e.to_string()))?;
    let clean = |s: &str| s.trim_end_matches(['\0', ' ']).to_string();
    let meta = InstanceMeta {
        sop_class: clean(meta.media_storage_sop_class_uid()),
        sop_instance: clean(meta.media_storage_sop_instance_uid()),
        transfer_syntax: clean(meta.transfer_syntax()),
        data_set_at,
    };
    if meta.sop_class.is_empty() || meta.sop_instance.is_empty() || meta.transfer_syntax.is_empty() {
        return Err(file_err(
            "its File Meta Information lacks the SOP class, SOP instance or transfer syntax UID".into(),
        ));
    }
    Ok((meta, reader))
}

/// Opens a file whose meta group was read before, at its data set.
fn reopen_instance(path: &Path, meta: &InstanceMeta) -> Result<BufReader<File>, ScuError> {
    let file_err = |e: io::Error| ScuError::File {
        path: path.to_path_buf(),
        doing: "read",
        detail: e.to_string(),
    };
    let mut reader = BufReader::with_capacity(64 * 1024, File::open(path).map_err(file_err)?);
    reader.seek(SeekFrom::Start(meta.data_set_at)).map_err(file_err)?;
    Ok(reader)
}

/// How an instance would go over this association.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendPlan {
    /// In its own transfer syntax, on this presentation context.
    AsIs { context_id: u8 },
    /// Converted losslessly to `to` (an uncompressed syntax) first.
    Convert { context_id: u8, to: String },
    /// The SOP class is accepted, but in none of the syntaxes we could send
    /// it in: fetch it from the cloud again in one of `accepted`.
    NeedsOtherSyntax { file_syntax: String, accepted: Vec<String> },
    /// The destination refused every context proposed for this SOP class.
    SopClassNotAccepted { sop_class: String },
    /// This association never proposed the SOP class (a caller error: see
    /// [`split_proposals`](super::split_proposals)).
    NotProposed { sop_class: String },
}

/// What became of one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOutcome {
    /// The destination answered. Delivered only if `status.is_delivered()`.
    Responded {
        status: StoreStatus,
        /// The transfer syntax it was sent in.
        sent_as: String,
        /// The file's own syntax, when it was converted.
        converted_from: Option<String>,
    },
    /// Not sent: the destination takes the SOP class only in `accepted`,
    /// which we cannot produce from `file_syntax` here (`why` says what
    /// failed when a conversion was tried).
    NeedsOtherSyntax {
        file_syntax: String,
        accepted: Vec<String>,
        why: Option<String>,
    },
    /// Not sent: the destination does not take this SOP class.
    SopClassNotAccepted { sop_class: String },
    /// Not sent: not proposed on this association.
    NotProposed { sop_class: String },
}

impl StoreOutcome {
    /// True when the destination stored the instance (success or warning).
    pub fn is_delivered(&self) -> bool {
        matches!(self, StoreOutcome::Responded { status, .. } if status.is_delivered())
    }
}

/// An association for C-STORE. Call [`release`](Self::release) when done;
/// dropping it aborts the association.
pub struct StoreAssociation {
    assoc: Assoc,
    proposals: Vec<Proposal>,
    decompress_lossy: bool,
    coerce: Coercions,
}

impl StoreAssociation {
    /// Connects and negotiates `proposals` (at most 128: see
    /// [`split_proposals`](super::split_proposals)).
    pub fn open(opts: &ScuOptions, proposals: &[Proposal]) -> Result<StoreAssociation, ScuError> {
        let assoc = Assoc::open(opts, proposals)?;
        Ok(StoreAssociation {
            assoc,
            proposals: proposals.to_vec(),
            decompress_lossy: opts.decompress_lossy,
            coerce: opts.coerce.clone(),
        })
    }

    /// The transfer syntaxes accepted for `sop_class`, each once, in the
    /// order of the contexts.
    fn accepted_syntaxes(&self, sop_class: &str) -> Vec<String> {
        let mut accepted: Vec<String> = Vec::new();
        for c in self.assoc.contexts() {
            let ts = trim(&c.transfer_syntax);
            if trim(&c.abstract_syntax) == sop_class && !accepted.iter().any(|a| a == ts) {
                accepted.push(ts.to_string());
            }
        }
        accepted
    }

    /// What this association proposed (the destination may have refused some).
    pub fn proposals(&self) -> &[Proposal] {
        &self.proposals
    }

    /// True when this association proposed every SOP class and transfer
    /// syntax of `group`, so it can carry whatever a new one opened for
    /// `group` could.
    pub fn proposes_all(&self, group: &[Proposal]) -> bool {
        group
            .iter()
            .all(|g| g.transfer_syntaxes.iter().all(|ts| self.proposes(&g.sop_class, ts)))
    }

    /// True when this association proposed `sop_class` in `transfer_syntax`.
    pub fn proposes(&self, sop_class: &str, transfer_syntax: &str) -> bool {
        let (sop_class, ts) = (trim(sop_class), trim(transfer_syntax));
        self.proposals
            .iter()
            .any(|p| p.sop_class == sop_class && p.transfer_syntaxes.iter().any(|t| t == ts))
    }

    /// False once an error has closed or aborted the association.
    pub fn is_usable(&self) -> bool {
        self.assoc.is_open()
    }

    /// How an instance of `sop_class` in `transfer_syntax` would be sent.
    pub fn plan(&self, sop_class: &str, transfer_syntax: &str) -> SendPlan {
        let sop_class = trim(sop_class);
        let ts = trim(transfer_syntax);
        let contexts: Vec<(u8, &str)> = self
            .assoc
            .contexts()
            .iter()
            .filter(|c| trim(&c.abstract_syntax) == sop_class)
            .map(|c| (c.id, trim(&c.transfer_syntax)))
            .collect();
        if contexts.is_empty() {
            return if self.proposals.iter().any(|p| p.sop_class == sop_class) {
                SendPlan::SopClassNotAccepted {
                    sop_class: sop_class.to_string(),
                }
            } else {
                SendPlan::NotProposed {
                    sop_class: sop_class.to_string(),
                }
            };
        }
        if let Some((id, _)) = contexts.iter().find(|(_, t)| *t == ts) {
            return SendPlan::AsIs { context_id: *id };
        }
        if transcode::can_convert(ts, self.decompress_lossy) {
            for target in [EXPLICIT_VR_LE, IMPLICIT_VR_LE] {
                if let Some((id, _)) = contexts.iter().find(|(_, t)| *t == target) {
                    return SendPlan::Convert {
                        context_id: *id,
                        to: target.to_string(),
                    };
                }
            }
        }
        SendPlan::NeedsOtherSyntax {
            file_syntax: ts.to_string(),
            accepted: self.accepted_syntaxes(sop_class),
        }
    }

    /// Sends one instance file with C-STORE and waits for the response.
    ///
    /// `Ok` covers every case where the association survives, including
    /// "not sent" outcomes. On `Err`, check [`ScuError::outcome_unknown`]
    /// and [`is_usable`](Self::is_usable); the instance is not delivered.
    pub fn store_file(&mut self, path: &Path) -> Result<StoreOutcome, ScuError> {
        self.check_open()?;
        let (meta, reader) = open_instance(path)?;
        self.store_opened(path, meta, reader)
    }

    /// [`store_file`](Self::store_file) for a file whose meta group was
    /// read already (cached instance files never change), without reading
    /// it again.
    pub fn store_instance(&mut self, path: &Path, meta: &InstanceMeta) -> Result<StoreOutcome, ScuError> {
        self.check_open()?;
        let reader = reopen_instance(path, meta)?;
        self.store_opened(path, meta.clone(), reader)
    }

    fn check_open(&self) -> Result<(), ScuError> {
        if self.assoc.is_open() {
            Ok(())
        } else {
            Err(self.assoc.closed())
        }
    }

    fn store_opened(
        &mut self,
        path: &Path,
        meta: InstanceMeta,
        reader: BufReader<File>,
    ) -> Result<StoreOutcome, ScuError> {
        match self.plan(&meta.sop_class, &meta.transfer_syntax) {
            SendPlan::AsIs { context_id } => {
                let body = if self.coerce.is_empty() {
                    Body::Stream(reader)
                } else {
                    self.coerced(path, &meta, reader)?
                };
                let status = self.send(context_id, &meta, path, body)?;
                Ok(StoreOutcome::Responded {
                    status,
                    sent_as: meta.transfer_syntax,
                    converted_from: None,
                })
            }
            SendPlan::Convert { context_id, to } => {
                drop(reader);
                match transcode::convert(path, &meta.transfer_syntax, &to, &self.coerce) {
                    Ok(bytes) => {
                        let status = self.send(context_id, &meta, path, Body::Bytes(bytes))?;
                        Ok(StoreOutcome::Responded {
                            status,
                            sent_as: to,
                            converted_from: Some(meta.transfer_syntax),
                        })
                    }
                    Err(why) => Ok(StoreOutcome::NeedsOtherSyntax {
                        accepted: self.accepted_syntaxes(&meta.sop_class),
                        file_syntax: meta.transfer_syntax,
                        why: Some(format!("converting it to {to} failed: {why}")),
                    }),
                }
            }
            SendPlan::NeedsOtherSyntax { file_syntax, accepted } => Ok(StoreOutcome::NeedsOtherSyntax {
                file_syntax,
                accepted,
                why: None,
            }),
            SendPlan::SopClassNotAccepted { sop_class } => Ok(StoreOutcome::SopClassNotAccepted { sop_class }),
            SendPlan::NotProposed { sop_class } => Ok(StoreOutcome::NotProposed { sop_class }),
        }
    }

    /// The body of an instance sent with coercions: its data set up to the
    /// pixel data re-encoded with the rules applied, then the rest of the
    /// file as it is, streamed. Nothing is sent when coercing fails.
    fn coerced(&self, path: &Path, meta: &InstanceMeta, mut reader: BufReader<File>) -> Result<Body, ScuError> {
        let file_err = |doing, detail: String| ScuError::File {
            path: path.to_path_buf(),
            doing,
            detail,
        };
        let (head, rest_at) = self
            .coerce
            .coerced_head(path, meta.data_set_at, &meta.transfer_syntax)
            .map_err(|why| file_err("coerce", format!("{why}; it was not sent")))?;
        reader
            .seek(SeekFrom::Start(rest_at))
            .map_err(|e| file_err("read", e.to_string()))?;
        Ok(Body::Coerced(head, reader))
    }

    fn send(&mut self, context_id: u8, meta: &InstanceMeta, path: &Path, body: Body) -> Result<StoreStatus, ScuError> {
        let message_id = self.assoc.next_message_id();
        let rq = Command::c_store_rq(message_id, &meta.sop_class, &meta.sop_instance);
        let copied = {
            let mut writer = self.assoc.command_with_data(context_id, &rq)?;
            let copied = match body {
                Body::Stream(mut reader) => copy(&mut reader, &mut writer),
                Body::Bytes(bytes) => writer.write_all(&bytes).map_err(CopyError::Write),
                Body::Coerced(head, mut rest) => writer
                    .write_all(&head)
                    .map_err(CopyError::Write)
                    .and_then(|()| copy(&mut rest, &mut writer)),
            };
            // The last fragment goes out only if everything before did.
            copied.and_then(|_| writer.finish().map(|_| ()).map_err(CopyError::Write))
        };
        match copied {
            Ok(()) => {}
            Err(CopyError::Write(e)) => return Err(self.assoc.fail_send(e)),
            Err(CopyError::Read(e)) => {
                // Half a data set is on the wire; only an abort ends it.
                self.assoc.abort_inner();
                return Err(ScuError::File {
                    path: PathBuf::from(path),
                    doing: "read",
                    detail: format!("{e} (while sending; the association was aborted)"),
                });
            }
        }

        let rsp = self.assoc.receive_command(context_id, true)?;
        if rsp.command_field != command::field::C_STORE_RSP {
            let detail = format!("expected a C-STORE-RSP, got command field 0x{:04X}", rsp.command_field);
            return Err(self.assoc.protocol(&detail, true));
        }
        if rsp.message_id_being_responded_to != Some(message_id) {
            let detail = format!(
                "the C-STORE-RSP answers message id {:?}, we sent {message_id}",
                rsp.message_id_being_responded_to
            );
            return Err(self.assoc.protocol(&detail, true));
        }
        if let Some(uid) = &rsp.affected_sop_instance_uid
            && !uid.is_empty()
            && *uid != meta.sop_instance
        {
            let detail = format!("the C-STORE-RSP is about instance {uid}, we sent {}", meta.sop_instance);
            return Err(self.assoc.protocol(&detail, true));
        }
        if rsp.has_data_set() {
            // We would be out of step with the data set PDVs that follow.
            return Err(self.assoc.protocol("the C-STORE-RSP announces a data set", true));
        }
        let Some(code) = rsp.status else {
            return Err(self.assoc.protocol("the C-STORE-RSP has no status", true));
        };
        Ok(StoreStatus::new(code, rsp.error_comment))
    }

    /// A-RELEASE. The association is closed afterwards in any case.
    pub fn release(self) -> Result<(), ScuError> {
        self.assoc.release()
    }
}

enum Body {
    Stream(BufReader<File>),
    Bytes(Vec<u8>),
    /// A coerced data set, then the file's pixel data and what follows it.
    Coerced(Vec<u8>, BufReader<File>),
}

enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// io::copy, but telling a failing read (the file) from a failing write
/// (the network). Writes straight from the reader's own buffer.
fn copy(reader: &mut impl BufRead, writer: &mut impl Write) -> Result<(), CopyError> {
    loop {
        let chunk = match reader.fill_buf() {
            Ok([]) => return Ok(()),
            Ok(chunk) => chunk,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        let n = chunk.len();
        writer.write_all(chunk).map_err(CopyError::Write)?;
        reader.consume(n);
    }
}

fn trim(s: &str) -> &str {
    s.trim_end_matches(['\0', ' '])
}
