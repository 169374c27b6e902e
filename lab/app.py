"""The Streamlit entry of RLHF Lab: `rlhf-lab` (or `streamlit run lab/app.py -- --runs ROOT`).

A frame around the pages in pages/ (navigation, glossary, the freeze-live switch, the runs folder).
Everything happens inside `main()`, called only under `if __name__ == "__main__":`. Streamlit runs this
file as `__main__`; a spawned training worker re-runs `__main__`'s file as `__mp_main__` to rebuild
its globals, and must not start an app (see lab/jobs.py). So the module top level imports nothing
heavy and draws nothing.
"""

from pathlib import Path

from core.resources import pages_dir

PAGES_DIR = pages_dir()  # package data lab/pages when installed, <clone>/pages in a source tree


def page_files() -> list[Path]:
    """pages/<n>_<Name>.py in the order of their number (pages of other stages appear as they land)."""
    files = [p for p in PAGES_DIR.glob("*.py") if p.stem.split("_", 1)[0].isdigit()]
    return sorted(files, key=lambda p: int(p.stem.split("_", 1)[0]))


def page_title(path: Path) -> str:
    """ "3_Reward_model.py" -> "Reward model"."""
    return path.stem.split("_", 1)[1].replace("_", " ")


def main() -> None:
    import streamlit as st

    from lab import stages, ui

    st.set_page_config(page_title="RLHF Lab", page_icon=":material/science:", layout="wide")
    pages = []
    for path in page_files():
        title = page_title(path)
        stage = stages.BY_TITLE.get(title)
        label = stage.label if stage is not None and stage.number > 0 else title  # "4 · PPO", as Home numbers it
        pages.append(st.Page(str(path), title=label, icon=getattr(stage, "icon", None),
                             url_path=title.lower().replace(" ", "-"), default=title == "Home"))
    page = st.navigation(pages)
    with st.sidebar:
        ui.glossary_popover()
        ui.freeze_toggle()
        st.caption(f"Runs folder: `{ui.runs_root()}`")
    page.run()


if __name__ == "__main__":
    main()
