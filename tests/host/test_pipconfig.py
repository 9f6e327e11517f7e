from compat.host.pipconfig import PYPI, read_index_settings


def test_environment_variables_override_config_files(tmp_path):
    config = tmp_path / "pip.conf"
    config.write_text("[global]\nindex-url = https://mirror.example/simple\nfind-links = /opt/wheels\n"
                      "extra-index-url = file:///a/simple\n    file:///b/simple\n")
    settings = read_index_settings({"PIP_FIND_LINKS": "/local/wheels /more"}, [config])
    assert settings.index_url == "https://mirror.example/simple"
    assert settings.extra_index_urls == ("file:///a/simple", "file:///b/simple")
    assert settings.find_links == ("/local/wheels", "/more")
    args = settings.uv_args()
    assert args[:2] == ["--index-url", "https://mirror.example/simple"]
    assert args.count("--find-links") == 2 and args.count("--extra-index-url") == 2
    assert args[-2:] == ["--index-strategy", "unsafe-best-match"]  # pip merges indexes; so must uv


def test_install_section_overrides_global(tmp_path):
    config = tmp_path / "pip.conf"
    config.write_text("[global]\nindex-url = https://a/simple\n[install]\nindex-url = https://b/simple\n")
    assert read_index_settings({}, [config]).index_url == "https://b/simple"


def test_defaults_and_no_index(tmp_path):
    settings = read_index_settings({}, [])
    assert settings.index_url == PYPI and settings.uv_args() == ["--index-url", PYPI]
    assert read_index_settings({"PIP_NO_INDEX": "1"}, []).uv_args() == ["--no-index"]


def test_unreadable_config_is_ignored(tmp_path):
    config = tmp_path / "pip.conf"
    config.write_text("not an ini file [[[")
    assert read_index_settings({}, [config]).index_url == PYPI
