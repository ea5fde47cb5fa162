"""``titans explore``: an explorer in the browser, to play with a surprise-driven memory.

Optional extra ``explore`` (``pip install 'titans-miras[explore]'``). The computation behind each
panel lives in plain modules that need no web library and are tested on their own:

* :mod:`~titans_memory.explore.playground`: the demo layer on an editable series;
* :mod:`~titans_memory.explore.core_text`: the core's surprise and gates on a text, checkpoints;
* :mod:`~titans_memory.explore.texts`: every sentence of the page, in English and Vietnamese.

:mod:`~titans_memory.explore.app` builds the page with Panel and serves it (``titans explore``),
one module per tab: :mod:`~titans_memory.explore.tab_playground` and
:mod:`~titans_memory.explore.tab_text`.
"""
