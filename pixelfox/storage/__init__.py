"""Pure file code: paths, atomic writes, hashing. No Flask, Redis or DB here."""
