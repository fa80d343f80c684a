"""Write the gene annotation coreperturb ships (symbol, chromosome, locus type) from Bioconductor's
org.Hs.eg.db SQLite database.

Usage (offline once the Debian package is downloaded; nothing is installed):
    apt-get download r-bioc-org.hs.eg.db && dpkg -x r-bioc-org.hs.eg.db_*.deb orgdb
    python scripts/make_gene_annotation.py orgdb/usr/lib/R/site-library/org.Hs.eg.db/extdata/org.Hs.eg.sqlite

Source: org.Hs.eg.db 3.16.0 (Bioconductor; Artistic-2.0), built from NCBI Gene of 2022-09-12. A gene on
several chromosomes (the pseudo-autosomal genes on X and Y) lists them all, ``;``-joined. NCBI Gene names the 37 mitochondrially encoded genes ``ND1``, ``COX1``, ``TRNA``,
...; HGNC (and most KGs) name them ``MT-ND1``, ``MT-CO1``, ``MT-TA``: both forms are written, the HGNC one
derived from NCBI's ``MTND1``-style alias (``MT-`` + the rest), or for a tRNA gene without one, ``TRNx`` →
``MT-Tx``.
"""

from __future__ import annotations

import gzip
import sqlite3
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src" / "coreperturb" / "data" / "hs_genes.tsv.gz"


def main() -> None:
    con = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
    meta = dict(con.execute("select name, value from metadata"))
    rows = con.execute(
        "select g.symbol, group_concat(distinct c.chromosome), t.gene_type from gene_info g "
        "left join chromosomes c on c._id = g._id left join genetype t on t._id = g._id group by g._id"
    ).fetchall()
    best: dict[str, tuple[str, str]] = {}
    for symbol, chroms, gtype in rows:
        chrom = ";".join(sorted(set((chroms or "").split(",")) - {""}))
        if symbol not in best:  # a symbol is unique in NCBI Gene; keep the first if not
            best[symbol] = (chrom, gtype or "")
    mito = con.execute(
        "select g.symbol, group_concat(a.alias_symbol) from gene_info g join chromosomes c on c._id = g._id "
        "left join alias a on a._id = g._id where c.chromosome = 'MT' group by g._id"
    ).fetchall()
    for symbol, aliases in mito:
        short = [a for a in (aliases or "").split(",") if a.startswith("MT") and not a.startswith("MT-")]
        hgnc = "MT-" + short[0][2:] if short else "MT-T" + symbol[3:] if symbol.startswith("TRN") else None
        if hgnc and hgnc not in best:
            best[hgnc] = best[symbol]
    header = (
        f"# org.Hs.eg.db 3.16.0 (Bioconductor, Artistic-2.0); NCBI Gene {meta.get('EGSOURCEDATE', '?')}\n"
    )
    with gzip.GzipFile(OUT, "wb", mtime=0) as raw:
        raw.write(header.encode())
        raw.write(b"symbol\tchromosome\tlocus_type\n")
        for symbol in sorted(best):
            chrom, gtype = best[symbol]
            raw.write(f"{symbol}\t{chrom}\t{gtype}\n".encode())
    print(f"wrote {len(best)} genes to {OUT}")


if __name__ == "__main__":
    main()
