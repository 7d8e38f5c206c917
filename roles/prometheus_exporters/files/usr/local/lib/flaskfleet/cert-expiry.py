#!/usr/bin/python3
"""Write the expiry dates of TLS certificates for the node exporter's textfile collector.

Usage: cert-expiry.py OUTPUT.prom GLOB...  (managed by flaskfleet, roles/prometheus_exporters)
"""

import calendar
import glob
import os
import sys
import tempfile
import time

from cryptography import x509


def main(out, patterns):
    lines = [
        "# HELP flaskfleet_tls_certificate_not_after_seconds Expiry of a certificate (Unix time).",
        "# TYPE flaskfleet_tls_certificate_not_after_seconds gauge",
    ]
    errors = 0
    for path in sorted({p for pattern in patterns for p in glob.glob(pattern)}):
        try:
            with open(path, "rb") as f:
                cert = x509.load_pem_x509_certificate(f.read())
        except (OSError, ValueError):
            errors += 1
            continue
        label = path.replace("\\", "\\\\").replace('"', '\\"')
        lines.append(
            f'flaskfleet_tls_certificate_not_after_seconds{{path="{label}"}} '
            f"{calendar.timegm(cert.not_valid_after.utctimetuple())}"
        )
    lines += [
        "# HELP flaskfleet_tls_certificate_read_errors Certificates that could not be read.",
        "# TYPE flaskfleet_tls_certificate_read_errors gauge",
        f"flaskfleet_tls_certificate_read_errors {errors}",
        "# HELP flaskfleet_tls_certificate_check_timestamp_seconds When this report was written.",
        "# TYPE flaskfleet_tls_certificate_check_timestamp_seconds gauge",
        f"flaskfleet_tls_certificate_check_timestamp_seconds {time.time():.0f}",
    ]
    # Written beside the target and renamed: the collector never reads half a file.
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(out), prefix=".cert-expiry.")
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
