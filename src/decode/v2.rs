//! The remote-write 2.0 walk (`io.prometheus.write.v2.Request`, spec 2.0-rc.4): the symbol
//! table first, then each series' label refs resolved to byte ranges into the same buffer, so
//! a 2.0 request lands in the same [`SeriesBatch`] as a 1.0 one and everything downstream
//! works unchanged. Every MUST of the spec a request breaks is a 400 naming it.

use super::*;

impl SeriesBatch {
    /// Remote-write 2.0: symbols first (wherever they are in the body), then the series.
    pub(super) fn walk_request_v2(&mut self) -> Result<(), DecodeError> {
        let end = self.len;
        let mut pos = 0usize;
        // Pass 1: the symbol table. Top-level fields only; series are skipped by length.
        while pos < end {
            let buf = &self.buf[..end];
            let (field, wire) = read_key(buf, &mut pos)?;
            match (field, wire) {
                (4, WIRE_LEN) => {
                    let (a, b) = read_len(buf, &mut pos)?;
                    if !is_utf8(&buf[a..b]) {
                        return Err(DecodeError::Protobuf("a symbol that is not UTF-8"));
                    }
                    self.symbols.push(Span {
                        start: a as u32,
                        end: b as u32,
                    });
                }
                (5, WIRE_LEN) => {
                    read_len(buf, &mut pos)?;
                }
                (1, WIRE_LEN) => {
                    // Reserved in 2.0; in 1.0 it is `timeseries`. A sender that labels a 1.0
                    // body as 2.0 would otherwise be answered 204 with nothing relayed.
                    let (a, b) = read_len(buf, &mut pos)?;
                    if b > a {
                        return Err(DecodeError::BadRequest(
                            "field 1 is reserved in io.prometheus.write.v2.Request: this looks like \
                             a remote-write 1.0 body (prometheus.WriteRequest) sent with the 2.0 \
                             Content-Type"
                                .into(),
                        ));
                    }
                }
                _ => skip_unknown(buf, &mut pos, field, wire, &[4, 5])?,
            }
        }
        if let Some(first) = self.symbols.first()
            && first.start != first.end
        {
            return Err(DecodeError::BadRequest(
                "symbols[0] must be the empty string".into(),
            ));
        }
        // Pass 2: the series. The body is known well-formed at the top level now.
        pos = 0;
        while pos < end {
            let (field, wire) = read_key(&self.buf[..end], &mut pos)?;
            if (field, wire) != (5, WIRE_LEN) {
                skip_field(&self.buf[..end], &mut pos, wire)?;
                continue;
            }
            if self.series.len() >= self.limits.max_series_per_request {
                return Err(DecodeError::Limit {
                    what: "number of series".into(),
                    limit: self.limits.max_series_per_request,
                    setting: "max_series_per_request",
                });
            }
            let (start, stop) = read_len(&self.buf[..end], &mut pos)?;
            self.walk_series_v2(start, stop)?;
        }
        Ok(())
    }

    pub(super) fn walk_series_v2(&mut self, start: usize, end: usize) -> Result<(), DecodeError> {
        let series = self.series.len();
        let labels_start = self.labels.len();
        let samples_start = self.samples.len();
        let extras_start = self.extras.len();
        let mut histograms = 0u32;
        let mut pending_name: Option<Span> = None;
        let mut series_metadata = None;
        let mut pos = start;
        let buf = &self.buf[..end];
        let symbols = &self.symbols[..];
        let bad = |what: String| DecodeError::BadSeries { series, what };
        let symbol = |r: u64, what: &str| {
            symbols.get(r as usize).copied().ok_or_else(|| {
                bad(format!(
                    "{what} ref {r} is out of range (the request has {} symbols)",
                    symbols.len()
                ))
            })
        };
        while pos < end {
            let field_start = pos;
            let (field, wire) = read_key(buf, &mut pos)?;
            match (field, wire) {
                // labels_refs: packed as every encoder writes it, or one varint per field.
                (1, WIRE_LEN | WIRE_VARINT) => {
                    let (mut p, stop) = if wire == WIRE_LEN {
                        read_len(buf, &mut pos)?
                    } else {
                        let p = pos;
                        read_varint(buf, &mut pos)?;
                        (p, pos)
                    };
                    while p < stop {
                        let r = read_varint(&buf[..stop], &mut p)?;
                        let span = symbol(r, "label")?;
                        match pending_name.take() {
                            None => pending_name = Some(span),
                            Some(name) => self.labels.push(LabelRef { name, value: span }),
                        }
                    }
                }
                (2, WIRE_LEN) => {
                    let (a, b) = read_len(buf, &mut pos)?;
                    let (sample, start_timestamp) = match canonical_sample(&self.buf, a, b) {
                        Some(s) => (s, 0),
                        None => walk_sample(&buf[..b], a, &[1, 2, 3])?,
                    };
                    if start_timestamp != 0 {
                        self.start_timestamps
                            .push((self.samples.len() as u32, start_timestamp));
                    }
                    self.samples.push(sample);
                }
                (3, WIRE_LEN) => {
                    let (a, b) = read_len(buf, &mut pos)?;
                    check_message(&buf[a..b], HISTOGRAM_V2)?;
                    if histogram_start(&buf[field_start..pos]).is_some() {
                        self.histogram_start_timestamps += 1;
                    }
                    self.extras.push(Span {
                        start: field_start as u32,
                        end: pos as u32,
                    });
                    histograms += 1;
                }
                (4, WIRE_LEN) => {
                    let (a, b) = read_len(buf, &mut pos)?;
                    check_exemplar_v2(&buf[..b], a, &symbol).map_err(|e| match e {
                        ExemplarError::Decode(e) => e,
                        ExemplarError::Bad(what) => bad(what.into()),
                    })?;
                    self.pending_exemplars.push(Span {
                        start: a as u32,
                        end: b as u32,
                    });
                }
                (5, WIRE_LEN) => {
                    let (a, b) = read_len(buf, &mut pos)?;
                    series_metadata = Some(metadata::metadata_v2(buf, a, b, &symbol)?);
                }
                _ => skip_unknown(buf, &mut pos, field, wire, &[1, 2, 3, 4, 5])?,
            }
        }
        if pending_name.is_some() {
            return Err(bad(
                "labels_refs holds an odd number of refs; they must come in name/value pairs"
                    .into(),
            ));
        }
        if histograms > 0 && self.samples.len() > samples_start {
            return Err(bad(
                "has both samples and histograms; a 2.0 series carries one kind".into(),
            ));
        }
        // A 2.0 histogram field (3) becomes a 1.0 one (4) by its one-byte tag: the 1.0
        // layout is the same, so it then passes through to any target like a 1.0 extra.
        for e in &self.extras[extras_start..] {
            debug_assert_eq!(self.buf[e.start as usize], 0x1a);
            self.buf[e.start as usize] = 0x22;
        }
        for i in 0..self.pending_exemplars.len() {
            let payload = self.pending_exemplars[i];
            let span = self.exemplar_as_v1(payload)?;
            self.extras.push(span);
            self.exemplars += 1;
        }
        self.pending_exemplars.clear();
        let hash = self.check_pushed_labels(series, labels_start)?;
        let metadata = match series_metadata {
            Some(m) => self.attach_metadata_v2(labels_start, m),
            None => 0,
        };
        self.series.push(SeriesRef {
            labels: (labels_start as u32, self.labels.len() as u32),
            samples: (samples_start as u32, self.samples.len() as u32),
            extras: (extras_start as u32, self.extras.len() as u32),
            histograms,
            metadata,
            hash,
            hash_region: Span::default(),
            // A 2.0 series' labels are symbol refs: there are no label bytes to copy.
            splice: None,
        });
        Ok(())
    }

    /// Write the checked 2.0 exemplar at `payload` as a complete 1.0 `exemplars` field
    /// (field 3 of a 1.0 `TimeSeries`: labels as `Label` messages, value, timestamp) at the
    /// tail of `buf`, and return its span. Sized first, then written in place: the label
    /// strings are copied from their symbols within the same buffer.
    pub(super) fn exemplar_as_v1(&mut self, payload: Span) -> Result<Span, DecodeError> {
        let msg = payload.range();
        let mut refs = std::mem::take(&mut self.exemplar_refs);
        refs.clear();
        let (value, timestamp) = exemplar_parts(&self.buf[..msg.end], msg.start, &mut refs)?;
        let sym = |r: u32| self.symbols[r as usize];
        let mut content = 9 + 1 + varint_len(timestamp);
        for pair in refs.chunks_exact(2) {
            let l = label_len(sym(pair[0]), sym(pair[1]));
            content += 1 + varint_len(l as u64) + l;
        }
        let size = 1 + varint_len(content as u64) + content;
        let at = self.tail.max(self.len);
        if at + size > u32::MAX as usize {
            return Err(DecodeError::TooLarge {
                declared: at + size,
                limit: u32::MAX as usize,
            });
        }
        if self.buf.len() < at + size {
            self.buf.resize(at + size, 0);
        }
        let mut w = at;
        let put = |buf: &mut Vec<u8>, w: &mut usize, v: u64| {
            let mut v = v;
            while v >= 0x80 {
                buf[*w] = (v as u8) | 0x80;
                *w += 1;
                v >>= 7;
            }
            buf[*w] = v as u8;
            *w += 1;
        };
        self.buf[w] = 0x1a;
        w += 1;
        put(&mut self.buf, &mut w, content as u64);
        for pair in refs.chunks_exact(2) {
            let (n, v) = (
                self.symbols[pair[0] as usize],
                self.symbols[pair[1] as usize],
            );
            self.buf[w] = 0x0a;
            w += 1;
            put(&mut self.buf, &mut w, label_len(n, v) as u64);
            for (tag, s) in [(0x0a, n), (0x12, v)] {
                self.buf[w] = tag;
                w += 1;
                put(&mut self.buf, &mut w, u64::from(s.end - s.start));
                self.buf.copy_within(s.range(), w);
                w += (s.end - s.start) as usize;
            }
        }
        self.exemplar_refs = refs;
        self.buf[w] = 0x11;
        self.buf[w + 1..w + 9].copy_from_slice(&value.to_le_bytes());
        w += 9;
        self.buf[w] = 0x18;
        w += 1;
        put(&mut self.buf, &mut w, timestamp);
        debug_assert_eq!(w, at + size);
        self.tail = w;
        Ok(Span {
            start: at as u32,
            end: w as u32,
        })
    }
}

enum ExemplarError {
    Decode(DecodeError),
    Bad(&'static str),
}

impl From<DecodeError> for ExemplarError {
    fn from(e: DecodeError) -> Self {
        ExemplarError::Decode(e)
    }
}

/// Check a 2.0 `Exemplar` (`buf` ends where it ends): refs in range and in pairs, a
/// timestamp present (the spec requires one; proto3 cannot tell 0 from absent, so 0 is
/// refused like prost-based receivers do).
fn check_exemplar_v2<F>(buf: &[u8], start: usize, symbol: &F) -> Result<(), ExemplarError>
where
    F: Fn(u64, &str) -> Result<Span, DecodeError>,
{
    let mut refs = 0usize;
    let mut timestamp = 0u64;
    let mut pos = start;
    while pos < buf.len() {
        let (field, wire) = read_key(buf, &mut pos)?;
        match (field, wire) {
            (1, WIRE_LEN | WIRE_VARINT) => {
                let (mut p, stop) = if wire == WIRE_LEN {
                    read_len(buf, &mut pos)?
                } else {
                    let p = pos;
                    read_varint(buf, &mut pos)?;
                    (p, pos)
                };
                while p < stop {
                    let r = read_varint(&buf[..stop], &mut p)?;
                    symbol(r, "exemplar label")?;
                    refs += 1;
                }
            }
            (2, WIRE_I64) => skip_field(buf, &mut pos, wire)?,
            (3, WIRE_VARINT) => timestamp = read_varint(buf, &mut pos)?,
            _ => skip_unknown(buf, &mut pos, field, wire, &[1, 2, 3])?,
        }
    }
    if !refs.is_multiple_of(2) {
        return Err(ExemplarError::Bad(
            "an exemplar's labels_refs hold an odd number of refs",
        ));
    }
    if timestamp == 0 {
        return Err(ExemplarError::Bad("an exemplar has no timestamp"));
    }
    Ok(())
}

/// The non-zero `start_timestamp` (field 17) of a complete, checked histogram field (tag,
/// length, message), if it has one.
pub(crate) fn histogram_start(field: &[u8]) -> Option<i64> {
    let mut pos = 1;
    let (a, b) = read_len(field, &mut pos).ok()?;
    let msg = &field[..b];
    let mut p = a;
    let mut found = None;
    while p < b {
        let (f, w) = read_key(msg, &mut p).ok()?;
        if (f, w) == (17, WIRE_VARINT) {
            found = Some(read_varint(msg, &mut p).ok()? as i64);
        } else {
            skip_field(msg, &mut p, w).ok()?;
        }
    }
    found.filter(|&v| v != 0)
}
