"""simlab's dashboard: ``streamlit run app.py`` (or ``make run``, or ``simlab dashboard``)."""

from simlab.dashboard import main

main()
