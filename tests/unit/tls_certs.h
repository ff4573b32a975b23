/* Test certificates made at run time (no private key is committed): a CA and
 * EC P-256 leaves it signs, written as PEM files in a temporary directory.
 * Header-only, shared by tests/unit/test_tls.c and tests/fuzz/fuzz_tls.c. */
#ifndef SLUICE_TEST_TLS_CERTS_H
#define SLUICE_TEST_TLS_CERTS_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

typedef struct {
    EVP_PKEY *key;
    X509 *cert;
} tc_pair;

static void tc_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v;
    X509V3_set_ctx_nodb(&v);
    X509V3_set_ctx(&v, issuer ? issuer : x, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v, nid, value);
    if (!e || !X509_add_ext(x, e, -1))
        abort();
    X509_EXTENSION_free(e);
}

/* A CA (issuer NULL: self-signed, CA:TRUE) or a leaf signed by issuer,
 * with subjectAltName san ("DNS:a.example,DNS:*.b.example"; NULL: none). */
static tc_pair tc_make(const char *cn, const char *san, const tc_pair *issuer)
{
    static long serial = 1;
    tc_pair p = {EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"), X509_new()};
    if (!p.key || !p.cert)
        abort();
    X509 *x = p.cert;
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 7 * 86400);
    X509_set_pubkey(x, p.key);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer->cert) : name);
    X509 *ic = issuer ? issuer->cert : NULL;
    tc_ext(x, ic, NID_subject_key_identifier, "hash");
    if (issuer) {
        tc_ext(x, ic, NID_authority_key_identifier, "keyid");
        tc_ext(x, ic, NID_basic_constraints, "critical,CA:FALSE");
        tc_ext(x, ic, NID_key_usage, "critical,digitalSignature");
        tc_ext(x, ic, NID_ext_key_usage, "serverAuth,clientAuth");
    } else {
        tc_ext(x, ic, NID_basic_constraints, "critical,CA:TRUE");
        tc_ext(x, ic, NID_key_usage, "critical,keyCertSign,cRLSign");
    }
    if (san)
        tc_ext(x, ic, NID_subject_alt_name, san);
    if (!X509_sign(x, issuer ? issuer->key : p.key, EVP_sha256()))
        abort();
    return p;
}

static void tc_free(tc_pair *p)
{
    EVP_PKEY_free(p->key);
    X509_free(p->cert);
    p->key = NULL;
    p->cert = NULL;
}

/* cert_path: the leaf then (if chain) the issuer; key_path: the key. */
static void tc_write(const tc_pair *p, const tc_pair *chain, const char *cert_path, const char *key_path)
{
    FILE *f = fopen(cert_path, "w");
    if (!f || !PEM_write_X509(f, p->cert) || (chain && !PEM_write_X509(f, chain->cert)) || fclose(f))
        abort();
    f = fopen(key_path, "w");
    if (!f || !PEM_write_PrivateKey(f, p->key, NULL, NULL, 0, NULL, NULL) || fclose(f))
        abort();
}

#endif
