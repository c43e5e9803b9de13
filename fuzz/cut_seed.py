"""Cuts a small valid seed out of a real checkpoint, keeping its structure.

    python3 fuzz/cut_seed.py safetensors SOURCE.safetensors OUT   metadata and the 8 first tensors
    python3 fuzz/cut_seed.py zip SOURCE.pt OUT                    every record but the tensor data,
                                                                  and the 2 smallest data records
"""
import json
import struct
import sys
import zipfile


def cut_safetensors(source, out):
    with open(source, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
        data = f.read()
    kept = {"__metadata__": header["__metadata__"]} if "__metadata__" in header else {}
    tensors = sorted(((n, e) for n, e in header.items() if n != "__metadata__"), key=lambda t: t[1]["data_offsets"][0])
    offset, chunks = 0, []
    for name, entry in tensors[:8]:
        begin, end = entry["data_offsets"]
        chunks.append(data[begin:end])
        kept[name] = dict(entry, data_offsets=[offset, offset + end - begin])
        offset += end - begin
    text = json.dumps(kept).encode()
    text += b" " * (-(8 + len(text)) % 8)
    with open(out, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))


def cut_zip(source, out):
    with zipfile.ZipFile(source) as archive:
        records = archive.infolist()
        data = sorted((r for r in records if "/data/" in r.filename), key=lambda r: r.file_size)[:2]
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as cut:
            for record in records:
                if "/data/" not in record.filename or record in data:
                    cut.writestr(record.filename, archive.read(record))


{"safetensors": cut_safetensors, "zip": cut_zip}[sys.argv[1]](sys.argv[2], sys.argv[3])
