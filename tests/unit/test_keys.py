from pipeline.storage.keys import identity_for_key, image_key, is_valid_image_id, new_image_id


def test_new_ids_are_valid_and_unique():
    ids = {new_image_id() for _ in range(100)}
    assert len(ids) == 100 and all(is_valid_image_id(i) for i in ids)


def test_a_simple_upload_key_names_its_image():
    identity = identity_for_key("uploads/", "uploads/chelsea.jpg")
    assert identity.preferred_id == "chelsea"
    assert identity.fallback_id.startswith("k") and identity.fallback_id != "chelsea"


def test_other_keys_get_a_stable_digest_id():
    for key in ("uploads/a/b.jpg", "uploads/with space.jpg", "uploads/noextension"):
        identity = identity_for_key("uploads/", key)
        assert identity.preferred_id == identity.fallback_id
        assert is_valid_image_id(identity.preferred_id)
        assert identity_for_key("uploads/", key) == identity


def test_same_stem_different_extension_differs_in_fallback():
    a, b = (
        identity_for_key("uploads/", "uploads/cat.jpg"),
        identity_for_key("uploads/", "uploads/cat.png"),
    )
    assert a.preferred_id == b.preferred_id == "cat"
    assert a.fallback_id != b.fallback_id


def test_image_key_layout():
    assert image_key("uploads/", "abc", "png") == "uploads/abc.png"


def test_an_id_with_a_trailing_newline_is_not_valid():
    assert is_valid_image_id("chelsea")
    assert not is_valid_image_id("chelsea\n")
    identity = identity_for_key("uploads/", "uploads/chelsea\n.jpg")
    assert identity.preferred_id == identity.fallback_id != "chelsea\n"
