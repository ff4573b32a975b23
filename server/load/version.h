#ifndef SLOAD_VERSION_H
#define SLOAD_VERSION_H
#ifndef SLOAD_VERSION
#define SLOAD_VERSION "0.1.0"
#endif
#endif
