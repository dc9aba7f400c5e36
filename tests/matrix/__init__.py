"""
The version matrix: the suite on the oldest Python and the lowest releases
the project declares, and on the newest Python with the newest releases
(C{make matrix}; see L{tests.matrix.legs} for what each leg is).
"""
