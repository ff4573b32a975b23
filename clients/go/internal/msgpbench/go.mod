module sluice.dev/go/internal/msgpbench

go 1.24

replace sluice.dev/go => ../..

require (
	github.com/tinylib/msgp v1.6.5
	github.com/vmihailenco/msgpack/v5 v5.4.1
	sluice.dev/go v0.0.0-00010101000000-000000000000
)

require (
	github.com/philhofer/fwd v1.2.0 // indirect
	github.com/vmihailenco/tagparser/v2 v2.0.0 // indirect
)
