//! The request decoder on arbitrary bytes, both as a snappy body and as raw protobuf: it must
//! never panic, and a body it takes must be internally consistent (every label and sample it
//! reports lies inside the decoded buffer).
#![no_main]

use libfuzzer_sys::fuzz_target;
use promrelay::batch::SeriesBatch;
use promrelay::decode::DecodeLimits;

fuzz_target!(|data: &[u8]| {
    let mut batch = SeriesBatch::new();
    let limits = DecodeLimits {
        max_decoded_bytes: 8 << 20,
        ..DecodeLimits::default()
    };
    for result in [
        batch.decode_snappy(data, limits).map(|()| 0),
        batch.decode_protobuf(data).map(|()| 1),
    ] {
        match result {
            Ok(_) => {
                let mut samples = 0;
                for series in batch.iter() {
                    assert!(!series.label_refs().is_empty());
                    for l in series.label_refs() {
                        let _ = series
                            .buf()
                            .get(l.name.range())
                            .expect("name inside buffer");
                        let _ = series
                            .buf()
                            .get(l.value.range())
                            .expect("value inside buffer");
                    }
                    samples += series.samples().len();
                }
                assert_eq!(samples, batch.sample_count());
            }
            Err(e) => assert!((400..500).contains(&e.status()), "{e}"),
        }
    }
});
