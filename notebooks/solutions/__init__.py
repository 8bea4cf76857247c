"""Reference solutions of the notebooks' exercises, one module per notebook (nb01 ... nb04).

Read them after trying: each function is what the matching "your turn" cell asks for.
"""
