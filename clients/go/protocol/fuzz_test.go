package protocol

import (
	"bytes"
	"encoding/hex"
	"reflect"
	"testing"
)

// FuzzParse: go test -fuzz=FuzzParse ./protocol/
//
// Seeds are the inputs of every decode vector. Properties: no panic; Parse
// never consumes more than the buffer; a frame that decodes re-encodes
// canonically and decodes again to an equal frame (up to what the canonical
// form drops: an empty optional text, websocket false); feeding the input
// byte by byte to a StreamDecoder gives the same frames and error as the
// whole input (above 4 KiB of input: fed in pieces of 61 bytes).
func FuzzParse(f *testing.F) {
	for _, name := range vectorFiles(f) {
		v := loadVector(f, name)
		if v.Kind != "decode" {
			continue
		}
		b, err := hex.DecodeString(v.Hex)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, input []byte) {
		d := NewDecoder(DefaultFrame)
		d.SetMaxHeaders(1024)
		again := NewDecoder(MaxFrame)
		again.SetMaxHeaders(1 << 30)
		var fr, fr2 Frame
		whole := outcome{frames: []map[string]any{}}
		off := 0
		for {
			n, err := d.Parse(input[off:], &fr)
			if n < 0 || n > len(input)-off {
				t.Fatalf("Parse consumed %d of %d bytes", n, len(input)-off)
			}
			if err != nil {
				if n != 0 {
					t.Fatalf("Parse consumed %d bytes with an error", n)
				}
				whole.err = errName(err)
				break
			}
			if n == 0 {
				if off < len(input) {
					whole.err = "truncated"
				}
				break
			}
			if n < 5 {
				t.Fatalf("a frame of %d bytes", n)
			}
			off += n
			got := toVector(&fr)
			whole.frames = append(whole.frames, got)

			enc := AppendFrame(nil, &fr)
			m, err := again.Parse(enc, &fr2)
			if err != nil || m != len(enc) {
				t.Fatalf("re-encoded %v does not decode: %d of %d bytes, %v\n%x", fr.Type, m, len(enc), err, enc)
			}
			if a, b := canonicalView(got), canonicalView(toVector(&fr2)); !reflect.DeepEqual(a, b) {
				t.Fatalf("re-encoded frame decodes differently:\n first %v\nsecond %v", a, b)
			}
			if enc2 := AppendFrame(nil, &fr2); !bytes.Equal(enc, enc2) {
				t.Fatalf("canonical encoding not stable:\n%x\n%x", enc, enc2)
			}
		}
		// Byte by byte; above 4 KiB every 61st byte, to keep the fuzzer's
		// minimization of large inputs fast.
		step := 1
		if len(input) > 4096 {
			step = 61
		}
		cuts := make([]int, 0, len(input)/step)
		for i := 1; i < len(input); i += step {
			cuts = append(cuts, i)
		}
		byByte := replay(input, DefaultFrame, cuts)
		if byByte.err != whole.err || !reflect.DeepEqual(byByte.frames, whole.frames) {
			t.Fatalf("byte by byte: %v %q; whole: %v %q", byByte.frames, byByte.err, whole.frames, whole.err)
		}
	})
}

// canonicalView drops from a vector frame object what canonical encoding
// omits: an empty optional text and a false websocket setting.
func canonicalView(in map[string]any) map[string]any {
	m := make(map[string]any, len(in))
	for k, v := range in {
		m[k] = v
	}
	for _, k := range []string{"message", "reason"} {
		if m["type"] != "ERROR" && m[k] == "" {
			delete(m, k)
		}
	}
	if s, ok := m["settings"].(map[string]any); ok && s["websocket"] == false {
		c := make(map[string]any, len(s))
		for k, v := range s {
			c[k] = v
		}
		delete(c, "websocket")
		m["settings"] = c
	}
	return m
}
