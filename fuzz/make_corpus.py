#!/usr/bin/env python3
"""Writes the seed corpus of the fuzzers, fuzz/corpus/<fuzzer>/<seed>: a few tiny valid files
and near-misses per parser, built here byte by byte so that their origin is plain. The fuzzers
find the rest. Run from anywhere; it replaces the seeds it writes and leaves other files (such
as inputs kept from findings) alone."""
import gzip
import json
import os
import struct
import zlib

CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def write(fuzzer, name, data):
    os.makedirs(os.path.join(CORPUS, fuzzer), exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(CORPUS, fuzzer, name), "wb") as f:
        f.write(data)


def gz(data):
    return gzip.compress(data, mtime=0)  # mtime 0: the same bytes on every run


# ---- safetensors: 8-byte little-endian header length, JSON header, data ---------------------
def safetensors(header, data, pad=True):
    text = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


write("safetensors", "f32_with_metadata", safetensors(
    {"__metadata__": {"format": "pt"}, "w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}},
    struct.pack("<2f", 1.5, -2.0)))
write("safetensors", "i64_scalar_bf16_empty", safetensors(
    {"n": {"dtype": "I64", "shape": [], "data_offsets": [0, 8]},
     "h": {"dtype": "BF16", "shape": [1, 2], "data_offsets": [8, 12]},
     "z": {"dtype": "U8", "shape": [0, 3], "data_offsets": [12, 12]}},
    struct.pack("<q", 7) + bytes([0x80, 0x3F, 0x00, 0xC0])))
write("safetensors", "no_tensors", safetensors({}, b"", pad=False))
write("safetensors", "bool_f16_f64", safetensors(
    {"b": {"dtype": "BOOL", "shape": [2], "data_offsets": [0, 2]},
     "f": {"dtype": "F16", "shape": [1], "data_offsets": [2, 4]},
     "d": {"dtype": "F64", "shape": [1], "data_offsets": [4, 12]}},
    bytes([1, 0, 0x00, 0x3C]) + struct.pack("<d", 1e300)))
write("safetensors", "gap_between_tensors", safetensors(
    {"a": {"dtype": "I32", "shape": [1], "data_offsets": [0, 4]},
     "b": {"dtype": "I32", "shape": [1], "data_offsets": [8, 12]}}, bytes(12)))
write("safetensors", "header_past_end", struct.pack("<Q", 1 << 40) + b'{"a":')


# ---- IDX (Fashion-MNIST): 2-byte big-endian labels length, labels file, images file --------
def idx(dims, values):
    return bytes([0, 0, 0x08, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + bytes(values)


def idx_pair(labels, images):
    return struct.pack(">H", len(labels)) + labels + images


labels = idx([2], [0, 9])
images = idx([2, 2, 2], [0, 255, 128, 7, 1, 2, 3, 4])
write("idx", "two_images", idx_pair(labels, images))
write("idx", "two_images_gzip", idx_pair(gz(labels), gz(images)))
write("idx", "label_out_of_range", idx_pair(idx([2], [0, 10]), images))
write("idx", "truncated_images", idx_pair(labels, images[:-3]))
write("idx", "float_type", idx_pair(labels, bytes([0, 0, 0x0D, 3]) + images[4:]))


# ---- tokenizer: text to encode ------------------------------------------------------------
write("tokenizer", "caption", "A red T-shirt on the left &amp; two sneakers on the right")
write("tokenizer", "entities_digits", "&lt;b&gt; 12 bags &#x1F455; &eacute;t&eacute; don't    it's")
write("tokenizer", "scripts", "Ärmel ΣΊΣΥΦΟΣ İstanbul 白いシャツ Привет 🙂")
write("tokenizer", "specials", "<start_of_text>coat<end_of_text> <start_of_text")
write("tokenizer", "invalid_utf8", b"shirt \xff\xfe \xc3( \xe2\x82 \xf0\x9f\x99 end")


# ---- vocab: a merges file (header line, then "a b" per merge; byte symbols as GPT-2's) ------
vocab = "#version: 0.2\nt h\nth e</w>\na n\nan d</w>\nr e\nre d</w>\n"
write("vocab", "small", vocab)
write("vocab", "small_gzip", gz(vocab.encode()))
write("vocab", "crlf_trailing_blank", vocab.replace("\n", "\r\n") + "\r\n \n")
write("vocab", "unknown_token", "#version: 0.2\nt h\nzz q\n")
write("vocab", "three_fields", "#version: 0.2\nt h e\n")
write("vocab", "non_ascii_symbols", "#version: 0.2\nĠ t\nĠt h\nÃ ¤</w>\n")


# ---- bpe: first byte = merges (low 6 bits) and min frequency - 1 (high 2 bits), then captions
write("bpe", "three_captions", b"\x10" + b"a red shirt\na red bag\nthe red dress")
write("bpe", "min_frequency_3", bytes([0x3F | 0x80]) + b"bag bag bag\nbags\nbaggage bag")
write("bpe", "unicode_specials", b"\x08" + "Ärmel ärmel\n<end_of_text>\n白い 白い\n".encode())
write("bpe", "no_tokens", b"\x05" + b"   \n<start_of_text>\n")


# ---- train_config: config text, then NUL-separated --set overrides --------------------------
tiny_clip = {"embed_dim": 64, "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32,
                                             "patch_size": 4},
             "text_cfg": {"context_length": 16, "vocab_size": 600, "width": 32, "heads": 2, "layers": 2}}
tiny_dino = {"model": "dino", "image_size": 28, "patch_size": 7, "width": 48, "depth": 2, "heads": 3,
             "head_hidden": 64, "head_bottleneck": 16, "head_out": 128}
write("train_config", "clip", json.dumps({"task": "clip", "model": tiny_clip, "steps": 10, "batch_size": 4,
                                          "lr": 5e-4, "warmup_steps": 2}, indent=1))
write("train_config", "dino_csv", json.dumps({"task": "dino", "model": tiny_dino, "dataset": "csv",
                                              "csv_path": "t.tsv", "csv_separator": ",", "seed": 3,
                                              "lr_reference_batch": 256, "accum_steps": 2}, indent=1))
write("train_config", "with_overrides", json.dumps({"task": "dino", "model": tiny_dino}) +
      "\0steps=5\0warmup_steps=1\0model.width=96\0device=vulkan:1\0grad_clip_mode=per_parameter")
write("train_config", "model_path", json.dumps({"model": "tiny.json"}))
write("train_config", "duplicate_key", '{"task": "clip", "steps": 1, "steps": 2, "model": {}}')


# ---- model_config: OpenCLIP-schema CLIP and DINO model configs -----------------------------
write("model_config", "clip", json.dumps(tiny_clip, indent=1))
write("model_config", "clip_sparo", json.dumps(dict(tiny_clip, use_sparo=True, L=4, V=8, sparo_heads=2,
                                                    sparo_type="cont:softmax", quick_gelu=True)))
write("model_config", "clip_bottleneck", json.dumps(dict(tiny_clip, bottleneck_dim=16, reduce_depth=1)))
write("model_config", "dino", json.dumps(tiny_dino, indent=1))
write("model_config", "dino_sparo", json.dumps(dict(tiny_dino, readout="sparo", L=4, V=4, share_kv=False,
                                                    sparo_value_dim=8, mlp_ratio=2.5, norm_eps=1e-5)))
write("model_config", "wrong_types", '{"embed_dim": 64.5, "vision_cfg": {"mlp_ratio": "4"}, "width": null}')


# ---- caption_table: first byte even = tab, odd = comma; then the table ---------------------
write("caption_table", "tsv", "\0filepath\ttitle\na.png\ta red shirt\n/abs/b.png\ttwo bags\n\nc.png\tboots\n")
write("caption_table", "csv_quotes_crlf", '\1\xef\xbb\xbfid,filepath,title\r\n1,a.png,"a ""red"", shirt"\r\n'
                                         '2,"b\nc.png",x\r3,d.png,"multi\r\nline"')
write("caption_table", "wrong_field_count", "\0filepath\ttitle\na.png\tx\ty\n")
write("caption_table", "unclosed_quote", '\1filepath,title\na.png,"never closed\n')
write("caption_table", "comma_header_as_tsv", "\0filepath,title\na.png,x\n")


# ---- image: tiny files of the formats stb_image reads -------------------------------------
def png(width, height, bit_depth, color_type, rows, interlace=0, extra=b""):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    raw = b"".join(b"\0" + r for r in rows)  # filter 0 on every row
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, interlace)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra + chunk(b"IDAT", zlib.compress(raw)) +
            chunk(b"IEND", b""))


def plte(colors):
    body = b"".join(bytes(c) for c in colors)
    return struct.pack(">I", len(body)) + b"PLTE" + body + struct.pack(">I", zlib.crc32(b"PLTE" + body))


write("image", "rgb_2x2.png", png(2, 2, 8, 2, [bytes([255, 0, 0, 0, 255, 0]), bytes([0, 0, 255, 9, 9, 9])]))
write("image", "palette_3x1.png", png(3, 1, 2, 3, [bytes([0b00011000])],
                                      extra=plte([(0, 0, 0), (200, 10, 10), (10, 200, 10)])))
write("image", "gray16_interlaced_1x1.png", png(1, 1, 16, 0, [bytes([0x12, 0x34])], interlace=1))
write("image", "rgba_1x2.png", png(1, 2, 8, 6, [bytes([1, 2, 3, 4]), bytes([5, 6, 7, 8])]))
write("image", "rgb_2x2.ppm", b"P6\n# tiny\n2 2\n255\n" + bytes(range(12)))
write("image", "gray_3x1.pgm", b"P5 3 1 255 " + bytes([0, 128, 255]))
bmp_rows = bytes([0, 0, 255, 0, 255, 0, 0, 0]) + bytes([255, 0, 0, 9, 9, 9, 0, 0])  # 2 pixels + pad, bottom-up
write("image", "rgb_2x2.bmp", b"BM" + struct.pack("<IHHI", 54 + len(bmp_rows), 0, 0, 54) +
      struct.pack("<IiiHHIIiiII", 40, 2, 2, 1, 24, 0, len(bmp_rows), 2835, 2835, 0, 0) + bmp_rows)
write("image", "rgb_2x1.tga", struct.pack("<BBBHHBHHHHBB", 0, 0, 2, 0, 0, 0, 0, 0, 2, 1, 24, 0) +
      bytes([1, 2, 3, 4, 5, 6]))
# GIF: LZW minimum code size 2, codes clear (4), pixel 0, end (5), 3 bits each, LSB first.
write("image", "white_1x1.gif", b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0x80, 0, 0) + bytes([255, 255, 255, 0, 0, 0]) +
      b"," + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + bytes([2, 2, 0x44, 0x01, 0]) + b";")
write("image", "one_1x1.hdr", b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 1 +X 1\n" + bytes([128, 64, 32, 129]))
# A baseline JPEG, 8x8 grey: one block whose DC difference and AC run are both the single
# one-bit Huffman code "0" (category 0, end of block), padded with 1 bits.
write("image", "gray_8x8.jpg",
      b"\xff\xd8" +
      b"\xff\xdb" + struct.pack(">HB", 67, 0) + bytes([1] * 64) +
      b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, 8, 8, 1) + bytes([1, 0x11, 0]) +
      b"\xff\xc4" + struct.pack(">HB", 20, 0x00) + bytes([1] + [0] * 15) + bytes([0]) +
      b"\xff\xc4" + struct.pack(">HB", 20, 0x10) + bytes([1] + [0] * 15) + bytes([0]) +
      b"\xff\xda" + struct.pack(">HB", 8, 1) + bytes([1, 0x00, 0, 63, 0]) +
      bytes([0x3F]) + b"\xff\xd9")
# Headers claiming far more pixels than the files hold: stb allocated and filled the size a
# tiny GIF claims, and walked the whole size of a tiny BMP (the fuzzer's first out-of-memory
# and timeout findings); load_image refuses such sizes from the header.
write("image", "claims_10000x9000.gif", b"GIF89a" + struct.pack("<HHBBB", 10000, 9000, 0x80, 0, 0) +
      bytes([255, 255, 255, 0, 0, 0]) + b"," + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + bytes([2, 2, 0x44, 0x01, 0]) + b";")
write("image", "claims_20000x20000.bmp", b"BM" + struct.pack("<IHHI", 54, 0, 0, 54) +
      struct.pack("<IiiHHIIiiII", 40, 20000, 20000, 1, 24, 0, 0, 2835, 2835, 0, 0))
write("image", "png_bad_crc", png(2, 2, 8, 2, [bytes(6), bytes(6)])[:-5] + b"\0\0\0\0\0")
